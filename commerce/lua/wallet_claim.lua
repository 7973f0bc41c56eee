-- Claim the user's pending settlements whose lease ran out (a node died mid-settlement, or the
-- request's own settlement failed): each gets a new lease and is returned to the caller.
-- KEYS: 1 pending (hash entry id -> JSON)
-- ARGV: 1 lease ms, 2 at most this many
-- Returns {settlements pending (claimed or not), the claimed JSON values...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {redis.call('HLEN', KEYS[1])}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local p = cjson.decode(all[i + 1])
  if tonumber(p.claim) <= now then
    p.claim = now + tonumber(ARGV[1])
    local json = cjson.encode(p)
    redis.call('HSET', KEYS[1], all[i], json)
    out[#out + 1] = json
    if #out > tonumber(ARGV[2]) then break end
  end
end
return out
