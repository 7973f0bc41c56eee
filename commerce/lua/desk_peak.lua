-- Raise the room's peak viewer count on its desk. KEYS: 1 desk. ARGV: 1 viewers now,
-- 2 retention (ms). Returns the peak.
local peak = tonumber(redis.call('HGET', KEYS[1], 'peak_viewers') or '0')
local now = tonumber(ARGV[1])
if now <= peak then return peak end
redis.call('HSET', KEYS[1], 'peak_viewers', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return now
