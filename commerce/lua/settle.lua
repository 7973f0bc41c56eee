-- Settle holds of one sale: confirm or cancel one reservation, or sweep the expired ones.
-- Every transition leaves `held` exactly once, so each purchase.* event is appended once.
-- KEYS: 1 meta, 2 per-user units, 3 holds (zset), 4 reservations, 5 event stream,
--       6 undelivered (hash: reservation ids whose `purchase.reserved` was dead-lettered)
-- ARGV: 1 mode (`confirm`, `cancel` or `sweep`), 2 reservation id (sweep: batch size),
--       3 delivery floor (`ms-seq`: events at or above it are not yet acknowledged by the order
--       system's consumer group; '' when there is none to wait for), 4 max extension (ms),
--       5 extension step (ms, sweep only)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]
local floor_ms, floor_seq = string.match(ARGV[3] or '', '^(%d+)-(%d+)$')
local max_extension = tonumber(ARGV[4] or '0') or 0

-- A hold whose `purchase.reserved` has not reached the order system does not lapse (up to the
-- max extension past its expiry): buyers do not lose a hold because delivery was down.
local function undelivered(r)
  if redis.call('HEXISTS', KEYS[6], r.reservation_id) == 1 then return true end
  if not floor_ms or not r.stream_id then return false end
  local ms, seq = string.match(r.stream_id, '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  local fms, fseq = tonumber(floor_ms), tonumber(floor_seq)
  return ms > fms or (ms == fms and seq >= fseq)
end

local hold_ms = tonumber(redis.call('HGET', KEYS[1], 'hold_ms') or '0')
local function cap_of(r)
  return r.created_at + hold_ms + max_extension
end

local function emit(kind, r)
  local e = {
    event_id = r.reservation_id .. '.' .. kind, reservation_id = r.reservation_id,
    sale_id = r.sale_id, room_id = r.room_id, product_id = r.product_id, user_id = r.user_id,
    quantity = r.quantity, price_minor = r.price_minor, currency = r.currency, ts = now,
    coupon_id = r.coupon_id, claim_id = r.claim_id, subtotal_minor = r.subtotal_minor,
    discount_minor = r.discount_minor, total_minor = r.total_minor,
  }
  redis.call('XADD', KEYS[5], '*', 'type', 'purchase.' .. kind, 'data', cjson.encode(e))
end

-- `held` -> `cancelled`/`expired`: the units go back to stock and to the user's allowance.
local function release(r, kind)
  r.state = kind
  r.settled_at = now
  local json = cjson.encode(r)
  redis.call('HSET', KEYS[4], r.reservation_id, json)
  redis.call('ZREM', KEYS[3], r.reservation_id)
  local stock = redis.call('HINCRBY', KEYS[1], 'stock', r.quantity)
  redis.call('HINCRBY', KEYS[1], 'reserved', -r.quantity)
  if redis.call('HINCRBY', KEYS[2], r.user_id, -r.quantity) <= 0 then
    redis.call('HDEL', KEYS[2], r.user_id)
  end
  emit(kind, r)
  return json, stock
end

local function stock_left()
  return redis.call('HGET', KEYS[1], 'stock') or '0'
end

if mode == 'sweep' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  local out = {'swept', '', '', 0}
  local step = tonumber(ARGV[5] or '0') or 0
  for _, rid in ipairs(due) do
    local json = redis.call('HGET', KEYS[4], rid)
    local r = json and cjson.decode(json)
    local extend_to = r and r.state == 'held' and undelivered(r) and math.min(now + step, cap_of(r))
    if extend_to and extend_to > now then
      r.expires_at = extend_to
      redis.call('HSET', KEYS[4], rid, cjson.encode(r))
      redis.call('ZADD', KEYS[3], extend_to, rid)
      out[4] = out[4] + 1
    elseif r and r.state == 'held' then
      out[#out + 1] = (release(r, 'expired'))
    else
      redis.call('ZREM', KEYS[3], rid)
    end
  end
  -- Announce start and end once, whichever node's sweeper sees them first.
  local m = redis.call('HMGET', KEYS[1], 'status', 'starts_at', 'ends_at', 'ann_active', 'ann_ended')
  local announce = ''
  if m[1] then
    local ended = m[1] ~= 'active' or now >= tonumber(m[3])
    if ended and not m[5] then
      redis.call('HSET', KEYS[1], 'ann_ended', '1', 'ann_active', '1')
      announce = 'ended'
    elseif not ended and now >= tonumber(m[2]) and not m[4] then
      redis.call('HSET', KEYS[1], 'ann_active', '1')
      announce = 'started'
    end
    if ended and redis.call('ZCARD', KEYS[3]) == 0 then out[3] = 'retire' end
  end
  out[2] = announce
  return out
end

local json = redis.call('HGET', KEYS[4], ARGV[2])
if not json then return {'unknown_reservation'} end
local r = cjson.decode(json)
if r.state == 'held' and now >= r.expires_at and not (undelivered(r) and now < cap_of(r)) then
  local expired, stock = release(r, 'expired')
  return {'expired', expired, tostring(stock)}
end
local target = mode == 'confirm' and 'confirmed' or 'cancelled'
if r.state == target then return {'same', json, stock_left()} end
if r.state ~= 'held' then return {'conflict', json, stock_left()} end
if mode == 'cancel' then
  local cancelled, stock = release(r, 'cancelled')
  return {'ok', cancelled, tostring(stock)}
end
r.state = 'confirmed'
r.settled_at = now
json = cjson.encode(r)
redis.call('HSET', KEYS[4], r.reservation_id, json)
redis.call('ZREM', KEYS[3], r.reservation_id)
redis.call('HINCRBY', KEYS[1], 'reserved', -r.quantity)
redis.call('HINCRBY', KEYS[1], 'sold', r.quantity)
emit('confirmed', r)
return {'ok', json, stock_left()}
