-- Drop a user from the index of wallets with pending settlements, unless it was marked again
-- since the sweeper read its mark (an operation that may leave a settlement marks before it
-- runs, and every mark changes the value).
-- KEYS: 1 index (hash user -> mark count)   ARGV: 1 user, 2 the mark read
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
