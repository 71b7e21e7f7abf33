-- The oldest waiting events of one outbox shard, in commit order: one round trip.
-- KEYS: order ZSET, events HASH. ARGV: limit (at least 1).
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then
  return {}
end
return redis.call('HMGET', KEYS[2], unpack(ids))
