-- Create or replace a product, unless another seller owns it.
-- KEYS[1] the product hash; ARGV[1] the writer's seller; ARGV[2..] field, value pairs.
-- Returns 1 (written) or the owning seller (refused). A product stored before sellers were
-- recorded has none: the first write claims it.
local owner = redis.call('HGET', KEYS[1], 'seller')
if owner and owner ~= ARGV[1] then return owner end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'seller', ARGV[1], unpack(ARGV, 2))
return 1
