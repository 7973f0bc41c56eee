-- Reserve units of one flash sale, atomically: replay? rate limit? active? limit? stock?
-- then decrement, append `purchase.reserved`, and record the hold with its expiry and the
-- event's stream id.
-- KEYS: 1 meta (hash), 2 per-user units (hash), 3 idempotency keys (hash), 4 holds (zset by
--       expiry), 5 reservations (hash id -> JSON), 6 event stream, 7 user rate key, 8 ip rate key
-- ARGV: 1 room id, 2 user id, 3 idempotency key, 4 quantity, 5 new reservation id,
--       6 user limit, 7 ip limit, 8 rate window (ms); with a coupon (commerce/coupons.py):
--       9 coupon id, 10 claim id, 11 kind (`percent` or `amount`), 12 value (percent off, or
--       minor units off), 13 minimum spend (minor units), 14 product ids it applies to
--       (comma-separated, '' = all)
-- Returns {outcome, ...}; outcome `ok`/`replay` carry the reservation JSON and the stock left.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user, qty = ARGV[2], tonumber(ARGV[4])
local idem = user .. '\n' .. ARGV[3]

local seen = redis.call('HGET', KEYS[3], idem)
if seen then
  return {'replay', redis.call('HGET', KEYS[5], seen), redis.call('HGET', KEYS[1], 'stock') or '0'}
end

-- Fixed-window counters; a refused attempt still counts, so hammering does not help.
local function wait_ms(key, limit)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[8]) end
  if n > tonumber(limit) then return redis.call('PTTL', key) end
  return false
end
local wait = wait_ms(KEYS[7], ARGV[6]) or wait_ms(KEYS[8], ARGV[7])
if wait then return {'rate_limited', tostring(wait)} end

local m = redis.call('HMGET', KEYS[1], 'room_id', 'status', 'stock', 'per_user_limit',
  'starts_at', 'ends_at', 'hold_ms', 'price_minor', 'currency', 'product_id', 'sale_id')
if not m[1] or m[1] ~= ARGV[1] then return {'unknown_sale'} end
if m[2] ~= 'active' or now < tonumber(m[5]) or now >= tonumber(m[6]) then
  return {'sale_not_active', m[2]}
end
local limit = tonumber(m[4])
if qty > limit then return {'invalid_quantity', tostring(limit)} end
local stock = tonumber(m[3])
if stock <= 0 then return {'sold_out', '0'} end
if qty > stock then return {'insufficient_stock', tostring(stock)} end
local held = tonumber(redis.call('HGET', KEYS[2], user) or '0')
if held + qty > limit then return {'limit_reached', tostring(limit - held)} end

-- The coupon's terms, checked against this sale; the discount is floored in minor units (the
-- shop never gives away a fraction of a minor unit) and never above the subtotal.
local coupon = ARGV[9] and ARGV[9] ~= ''
local subtotal, discount = tonumber(m[8]) * qty, 0
if coupon then
  local products = ARGV[14]
  if products ~= '' and not string.find(',' .. products .. ',', ',' .. m[10] .. ',', 1, true) then
    return {'coupon_not_applicable', m[10]}
  end
  if subtotal < tonumber(ARGV[13]) then return {'coupon_min_spend', ARGV[13]} end
  -- cjson writes 14 significant digits: amounts above would not come out exact.
  if subtotal > 99999999999999 then return {'coupon_not_applicable', '', 'subtotal'} end
  local value = tonumber(ARGV[12])
  if ARGV[11] == 'percent' then
    -- subtotal * value / 100 without a float above 2^53: (100a + b) * v / 100
    discount = math.floor(subtotal / 100) * value + math.floor((subtotal % 100) * value / 100)
  else
    discount = value
  end
  if discount > subtotal then discount = subtotal end
end

stock = redis.call('HINCRBY', KEYS[1], 'stock', -qty)
redis.call('HINCRBY', KEYS[1], 'reserved', qty)
redis.call('HINCRBY', KEYS[2], user, qty)
local rid = ARGV[5]
local r = {
  reservation_id = rid, sale_id = m[11], room_id = m[1], product_id = m[10], user_id = user,
  quantity = qty, price_minor = tonumber(m[8]), currency = m[9],
  expires_at = now + tonumber(m[7]),
}
if coupon then
  r.coupon_id = ARGV[9]
  r.claim_id = ARGV[10]
  r.subtotal_minor = subtotal
  r.discount_minor = discount
  r.total_minor = subtotal - discount
end
r.event_id = rid .. '.reserved'
r.ts = now
-- The event's stream id goes in the hold: the sweeper lets a hold lapse only once the order
-- system's consumer group has acknowledged it (commerce/retention.py).
local stream_id = redis.call('XADD', KEYS[6], '*', 'type', 'purchase.reserved',
  'data', cjson.encode(r))
r.event_id = nil
r.ts = nil
r.state = 'held'
r.created_at = now
r.stream_id = stream_id
local json = cjson.encode(r)
redis.call('HSET', KEYS[5], rid, json)
redis.call('HSET', KEYS[3], idem, rid)
redis.call('ZADD', KEYS[4], r.expires_at, rid)
return {'ok', json, tostring(stock)}
