-- Registers a node as alive until a time, drops nodes whose time has passed, and returns the live ones.
-- KEYS: nodes ZSET (scored by expiry), node-urls HASH. ARGV: node id, internal URL, expiry, now (ms).
-- Returns {node ids, their URLs}.
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
if #live == 0 then
  return {live, {}}
end
return {live, redis.call('HMGET', KEYS[2], unpack(live))}
