-- Apply one purchase-stream event to its room's shop-desk figures, once: the reservation's
-- state (or the claim) recorded in the room's `desk:res` hash decides whether it still counts.
-- A settlement that arrives before its `purchase.reserved` (two nodes consuming) counts both;
-- the late `purchase.reserved` is then a duplicate.
-- KEYS: 1 desk (hash), 2 products (zset product -> units), 3 buyers (set), 4 res (hash
--       reservation id -> state, `c:CLAIM` -> 1)
-- ARGV: 1 kind (`reserved`, `confirmed`, `cancelled`, `expired`, `claimed`), 2 reservation or
--       claim id, 3 user id, 4 product id, 5 quantity, 6 currency, 7 amount (minor units,
--       after any discount), 8 coupon id ('' none), 9 retention (ms)
-- Returns 1 when the figures moved, 0 for a duplicate.
local kind, id, qty, amount = ARGV[1], ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[7])
local cur, coupon = ARGV[6], ARGV[8]

local function touch()
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[9]) end
end

if kind == 'claimed' then
  if redis.call('HSETNX', KEYS[4], 'c:' .. id, '1') == 0 then return 0 end
  redis.call('HINCRBY', KEYS[1], 'coupon_claims:' .. coupon, 1)
  touch()
  return 1
end

local function hold()
  redis.call('HINCRBY', KEYS[1], 'holds', 1)
  redis.call('HINCRBY', KEYS[1], 'units_held', qty)
  redis.call('HINCRBY', KEYS[1], 'held:' .. cur, amount)
  redis.call('ZINCRBY', KEYS[2], qty, ARGV[4])
  if redis.call('SADD', KEYS[3], ARGV[3]) == 1 then redis.call('HINCRBY', KEYS[1], 'buyers', 1) end
  if coupon ~= '' then redis.call('HINCRBY', KEYS[1], 'coupon_uses:' .. coupon, 1) end
end

local state = redis.call('HGET', KEYS[4], id)
if kind == 'reserved' then
  if state then return 0 end
  hold()
else
  if state and state ~= 'held' then return 0 end
  if not state then hold() end
  redis.call('HINCRBY', KEYS[1], 'units_held', -qty)
  redis.call('HINCRBY', KEYS[1], 'held:' .. cur, -amount)
  if kind == 'confirmed' then
    redis.call('HINCRBY', KEYS[1], 'units_sold', qty)
    redis.call('HINCRBY', KEYS[1], 'revenue:' .. cur, amount)
  else
    -- Released: the units and the coupon's use go back, the buyer stays a buyer.
    redis.call('ZINCRBY', KEYS[2], -qty, ARGV[4])
    if coupon ~= '' then redis.call('HINCRBY', KEYS[1], 'coupon_uses:' .. coupon, -1) end
  end
end
redis.call('HSET', KEYS[4], id, kind == 'reserved' and 'held' or kind)
touch()
return 1
