-- The room's leaderboards for one gift entry (or its refund), once: a request and a sweeper
-- that took over its lease may both settle the same entry, and ZINCRBY is not idempotent.
-- KEYS: 1 the entry's marker (string), 2 the all-time zset, 3 the show's zset (or KEYS[2] again)
-- ARGV: 1 credits given (a refund's are negative), 2 the sender, 3 marker TTL (s), 4 '1' if a show
-- Returns 1 when counted now, 0 when it had been.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[3])) then return 0 end
redis.call('ZINCRBY', KEYS[2], tonumber(ARGV[1]), ARGV[2])
if ARGV[4] == '1' then redis.call('ZINCRBY', KEYS[3], tonumber(ARGV[1]), ARGV[2]) end
return 1
