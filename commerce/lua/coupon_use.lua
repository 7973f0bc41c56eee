-- Set one of the user's free claims of a coupon aside for a reservation (`pending`, watched
-- until `lease` ms from now): the reservation script then applies the coupon in the sale's slot,
-- and the caller (or the coupon sweeper) settles the claim as `used` or frees it again.
-- KEYS: 1 meta, 2 claims, 3 users, 4 idempotency, 5 watch (zset claim id -> due ms)
-- ARGV: 1 room id, 2 user id, 3 the reservation's idempotency key (with its sale),
--       4 new reservation id, 5 lease (ms)
-- Returns {'ok'|'replay', claim JSON, kind, value, min spend, product ids} or {refusal, info}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user = ARGV[2]
local idem = 'r\n' .. user .. '\n' .. ARGV[3]

local m = redis.call('HMGET', KEYS[1], 'room_id', 'kind', 'value', 'min_spend_minor',
  'product_ids', 'ends_at')
if not m[1] or m[1] ~= ARGV[1] then return {'unknown_coupon'} end
local function answer(outcome, c)
  return {outcome, cjson.encode(c), m[2], m[3], m[4], m[5]}
end

-- A retried reservation gets the claim its first attempt set aside, while it is still set
-- aside for that attempt's reservation.
local seen = redis.call('HGET', KEYS[4], idem)
if seen then
  local id, rid = string.match(seen, '^(%S+) (%S+)$')
  local json = id and redis.call('HGET', KEYS[2], id)
  local c = json and cjson.decode(json)
  if c and (c.state == 'pending' or c.state == 'used') and c.reservation_id == rid then
    return answer('replay', c)
  end
end
if now >= tonumber(m[6]) then return {'coupon_expired', m[6]} end
local mine = cjson.decode(redis.call('HGET', KEYS[3], user) or '[]')
if #mine == 0 then return {'coupon_not_claimed'} end
for _, id in ipairs(mine) do
  local c = cjson.decode(redis.call('HGET', KEYS[2], id))
  if c.state == 'claimed' then
    c.state = 'pending'
    c.reservation_id = ARGV[4]
    redis.call('HSET', KEYS[2], id, cjson.encode(c))
    redis.call('HSET', KEYS[4], idem, id .. ' ' .. ARGV[4])
    redis.call('ZADD', KEYS[5], now + tonumber(ARGV[5]), id)
    return answer('ok', c)
  end
end
return {'coupon_used'}
