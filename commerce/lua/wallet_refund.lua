-- Refund one entry of the user's ledger by a reverse entry (never an edit), atomically and at
-- most once per entry: a top-up is taken back (only while the balance covers it), a gift is
-- given back to its sender and its host leg reversed (a negative leg, settled like a gift's).
-- KEYS: 1 wallet (hash), 2 ledger (stream), 3 idempotency (hash), 4 pending (hash),
--       5 purchase stream (with an outbox: a key of the wallet's slot, unused)
-- ARGV: 1 user, 2 idempotency key, 3 the refunded entry's id, 4 entry fields (JSON object),
--       5 outbox ('1'), 6 lease ms, 7 the refunding shop ('': any entry; else only its own:
--       a top-up it made, a gift in its rooms)
-- Returns {outcome, ...}: ok/replay carry the refund entry's JSON.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local user, target = ARGV[1], ARGV[3]
local idem = 'refund\n' .. ARGV[2]
local seen = redis.call('HGET', KEYS[3], idem)
if seen then return {'replay', seen} end
local done = redis.call('HGET', KEYS[3], 'refunded\n' .. target)
if done then return {'already_refunded', done} end

local found = redis.call('XRANGE', KEYS[2], target, target)
if #found == 0 then return {'unknown_entry'} end
local o = cjson.decode(found[1][2][2])
if ARGV[7] ~= '' and o.seller ~= ARGV[7] then return {'not_owner'} end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance') or '0')
local e = cjson.decode(ARGV[4])
local delta, leg
if o.kind == 'credit' then
  if balance < o.amount then return {'insufficient_credits', tostring(balance)} end
  delta = -o.amount
elseif o.kind == 'gift' then
  delta = -o.amount
  e.host_id = o.host_id
  e.room_id = o.room_id
  e.show_id = o.show_id
  e.gift_id = o.gift_id
  e.host_amount = -o.host_amount
  e.platform_amount = -o.platform_amount
  leg = {host = o.host_id, host_amount = -o.host_amount, platform_amount = -o.platform_amount}
else
  return {'not_refundable', o.kind}
end
balance = redis.call('HINCRBY', KEYS[1], 'balance', delta)
e.user_id = user
e.kind = 'refund'
e.refunds = target
e.refunded_kind = o.kind
e.amount = delta
e.balance = balance
e.key = ARGV[2]
e.ts = now
local entry_id = redis.call('XADD', KEYS[2], '*', 'e', cjson.encode(e))
e.entry_id = entry_id
e.event_id = 'wallet.' .. user .. '.' .. entry_id
local json = cjson.encode(e)
redis.call('HSET', KEYS[3], idem, json, 'refunded\n' .. target, json)

local pending = {claim = now + tonumber(ARGV[6]), user = user, entry_id = entry_id}
local needed = false
if leg then
  pending.leg = leg
  pending.room = e.room_id
  pending.show = e.show_id
  pending.refund = true
  needed = true
end
if ARGV[5] == '1' then
  pending.type = 'wallet.refunded'
  pending.data = json
  needed = true
else
  redis.call('XADD', KEYS[5], '*', 'type', 'wallet.refunded', 'data', json)
end
if needed then redis.call('HSET', KEYS[4], entry_id, cjson.encode(pending)) end
return {'ok', json}
