-- The host's leg of a gift (or of its refund), in the host's slot `{wallet:HOST}`, once per
-- gift entry: earnings and the platform's share grow (a refund's negative leg shrinks them; the
-- earnings may then go below zero: a claw-back, never a spendable balance).
-- KEYS: 1 host wallet (hash), 2 host ledger (stream), 3 host idempotency (hash)
-- ARGV: 1 the sender's entry (`USER/ENTRY`), 2 host amount, 3 platform amount, 4 room
-- Returns the host's ledger entry id (the first one on a replay).
local idem = 'earn\n' .. ARGV[1]
local seen = redis.call('HGET', KEYS[3], idem)
if seen then return seen end
local earned = redis.call('HINCRBY', KEYS[1], 'earned', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'platform', tonumber(ARGV[3]))
local id = redis.call('XADD', KEYS[2], '*', 'e', cjson.encode({
  kind = 'earning', amount = tonumber(ARGV[2]), platform_amount = tonumber(ARGV[3]),
  earned = earned, source = ARGV[1], room_id = ARGV[4],
}))
redis.call('HSET', KEYS[3], idem, id)
return id
