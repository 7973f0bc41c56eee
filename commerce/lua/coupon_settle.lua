-- Move a claim from one of the states `from` to `to`, only while it is set aside for the
-- reservation `rid` (a compare-and-set: the request, the hold's settlement and the coupon
-- sweeper may all try; the first wins, the rest find it moved).
-- KEYS: 1 claims, 2 watch (zset claim id -> due ms)
-- ARGV: 1 claim id, 2 reservation id, 3 from (comma-separated states, or `free`, below), 4 to
--       (`used`, `claimed` or `redeemed`), 5 due (ms) to watch it until, '' to stop watching
-- Returns {'ok', claim JSON} or {'stale', claim JSON or ''}.
local json = redis.call('HGET', KEYS[1], ARGV[1])
local c = json and cjson.decode(json)
-- `free`: the sweeper found a watched claim set aside for nothing: stop watching it, unless it
-- was set aside again meanwhile.
if ARGV[3] == 'free' then
  if not c or not c.reservation_id then redis.call('ZREM', KEYS[2], ARGV[1]) end
  return {'stale', json or ''}
end
if not c then return {'stale', ''} end
if c.reservation_id ~= ARGV[2] or not string.find(',' .. ARGV[3] .. ',', ',' .. c.state .. ',', 1, true) then
  return {'stale', json}
end
c.state = ARGV[4]
if ARGV[4] == 'claimed' then c.reservation_id = nil end
json = cjson.encode(c)
redis.call('HSET', KEYS[1], ARGV[1], json)
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), ARGV[1])
end
return {'ok', json}
