-- One wallet operation in the user's slot `{wallet:USER}`, atomically: replay? rate limit?
-- enough credits? then move the balance, append the ledger entry, remember the idempotency key,
-- and emit the operation's one event (to the purchase stream, or in the pending settlement).
-- Modes: `credit` (a top-up: +amount), `gift` (-amount; the host's earnings leg goes into
-- `pending`, settled in the host's slot by commerce/wallet.py or the sweeper).
-- KEYS: 1 wallet (hash: balance, earned, platform), 2 ledger (stream), 3 idempotency (hash),
--       4 pending settlements (hash entry id -> JSON), 5 purchase stream (with an outbox: a key
--       of the wallet's slot, unused), 6 rate key (gift mode)
-- ARGV: 1 mode, 2 user, 3 idempotency key, 4 amount (> 0), 5 entry fields (JSON object),
--       6 outbox ('1': the event waits in `pending` for the relay), 7 host (gift), 8 platform
--       share (basis points), 9 rate limit, 10 rate window ms, 11 balance cap, 12 lease ms
-- Returns {outcome, ...}: ok/replay carry the entry JSON; refusals their figure.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode, user, amount = ARGV[1], ARGV[2], tonumber(ARGV[4])
local idem = mode .. '\n' .. ARGV[3]

local seen = redis.call('HGET', KEYS[3], idem)
if seen then return {'replay', seen} end

if mode == 'gift' then
  -- Fixed window; a refused attempt still counts.
  local n = redis.call('INCR', KEYS[6])
  if n == 1 then redis.call('PEXPIRE', KEYS[6], ARGV[10]) end
  if n > tonumber(ARGV[9]) then return {'rate_limited', tostring(redis.call('PTTL', KEYS[6]))} end
end

local balance = tonumber(redis.call('HGET', KEYS[1], 'balance') or '0')
local delta
if mode == 'credit' then
  if balance + amount > tonumber(ARGV[11]) then
    return {'balance_limit', tostring(balance)}
  end
  delta = amount
else
  if balance < amount then return {'insufficient_credits', tostring(balance)} end
  delta = -amount
end
balance = redis.call('HINCRBY', KEYS[1], 'balance', delta)

local e = cjson.decode(ARGV[5])
e.user_id = user
e.kind = mode
e.amount = delta
e.balance = balance
e.key = ARGV[3]
e.ts = now
local leg = nil
if mode == 'gift' then
  -- The platform's share is floored: the host gets the remainder, so host + platform == debit.
  local platform = math.floor(amount * tonumber(ARGV[8]) / 10000)
  e.host_id = ARGV[7]
  e.host_amount = amount - platform
  e.platform_amount = platform
  leg = {host = ARGV[7], host_amount = amount - platform, platform_amount = platform}
end
local entry_id = redis.call('XADD', KEYS[2], '*', 'e', cjson.encode(e))
e.entry_id = entry_id
e.event_id = 'wallet.' .. user .. '.' .. entry_id
local json = cjson.encode(e)
redis.call('HSET', KEYS[3], idem, json)

local etype = (mode == 'credit') and 'wallet.credited' or 'gift.sent'
local pending = {claim = now + tonumber(ARGV[12]), user = user, entry_id = entry_id}
local needed = false
if leg then
  pending.leg = leg
  pending.room = e.room_id
  pending.show = e.show_id
  needed = true
end
if ARGV[6] == '1' then
  pending.type = etype
  pending.data = json
  needed = true
else
  redis.call('XADD', KEYS[5], '*', 'type', etype, 'data', json)
end
if needed then redis.call('HSET', KEYS[4], entry_id, cjson.encode(pending)) end
return {'ok', json}
