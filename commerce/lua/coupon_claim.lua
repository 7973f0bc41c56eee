-- Claim a coupon, atomically: replay? started? ended? quota? per-user limit? then count the
-- claim, record it and append `coupon.claimed`.
-- KEYS: 1 meta, 2 claims (hash claim id -> JSON), 3 users (hash user -> JSON array of claim
--       ids), 4 idempotency (hash), 5 event stream
-- ARGV: 1 room id, 2 user id, 3 idempotency key, 4 new claim id
-- Returns {'ok'|'replay', claim JSON, remaining quota} or {refusal, info}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user = ARGV[2]
local idem = 'c\n' .. user .. '\n' .. ARGV[3]

local m = redis.call('HMGET', KEYS[1], 'room_id', 'quota', 'claimed', 'per_user_limit',
  'starts_at', 'ends_at', 'coupon_id')
if not m[1] or m[1] ~= ARGV[1] then return {'unknown_coupon'} end
local seen = redis.call('HGET', KEYS[4], idem)
if seen then
  return {'replay', redis.call('HGET', KEYS[2], seen), tostring(tonumber(m[2]) - tonumber(m[3]))}
end
if now < tonumber(m[5]) then return {'coupon_not_started', m[5]} end
if now >= tonumber(m[6]) then return {'coupon_expired', m[6]} end
local quota, claimed = tonumber(m[2]), tonumber(m[3])
if claimed >= quota then return {'quota_exhausted', '0'} end
local mine = cjson.decode(redis.call('HGET', KEYS[3], user) or '[]')
local limit = tonumber(m[4])
if #mine >= limit then return {'claim_limit', tostring(limit)} end

claimed = redis.call('HINCRBY', KEYS[1], 'claimed', 1)
local id = ARGV[4]
local c = {claim_id = id, coupon_id = m[7], room_id = m[1], user_id = user, state = 'claimed',
  claimed_at = now, expires_at = tonumber(m[6])}
mine[#mine + 1] = id
redis.call('HSET', KEYS[3], user, cjson.encode(mine))
redis.call('HSET', KEYS[4], idem, id)
c.event_id = id .. '.claimed'
c.ts = now
redis.call('XADD', KEYS[5], '*', 'type', 'coupon.claimed', 'data', cjson.encode(c))
c.event_id = nil
c.ts = nil
local json = cjson.encode(c)
redis.call('HSET', KEYS[2], id, json)
return {'ok', json, tostring(quota - claimed)}
