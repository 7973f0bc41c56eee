-- Create a coupon of a room, unless the room already has the most coupons not yet ended.
-- KEYS: 1 the room's coupons (zset id -> ends_at), 2 the coupon's meta (hash), 3 event stream
-- ARGV: 1 coupon id, 2 max coupons not ended per room, 3 starts in (ms), 4 duration (ms),
--       5 the coupon's other fields (JSON object of strings and integers), 6 retention (ms): the
--       room's list forgets coupons that ended longer ago (their keys have expired by then)
-- Returns {'ok', meta JSON} or {'too_many_coupons', max}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[6])))
if redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') >= max then
  return {'too_many_coupons', tostring(max)}
end
local c = cjson.decode(ARGV[5])
c.coupon_id = ARGV[1]
c.claimed = 0
c.created_at = now
c.starts_at = now + tonumber(ARGV[3])
c.ends_at = c.starts_at + tonumber(ARGV[4])
local fields = {}
for k, v in pairs(c) do
  fields[#fields + 1] = k
  fields[#fields + 1] = tostring(v)
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[1], c.ends_at, ARGV[1])
c.event_id = ARGV[1] .. '.created'
c.ts = now
redis.call('XADD', KEYS[3], '*', 'type', 'coupon.created', 'data', cjson.encode(c))
c.event_id = nil
c.ts = nil
return {'ok', cjson.encode(c)}
