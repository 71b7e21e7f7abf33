-- Drops acknowledged events from one outbox shard; unknown ids are ignored.
-- KEYS: order ZSET, events HASH. ARGV: event ids.
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return #ARGV
