-- Moves one shard's scheduled events that are due into its outbox, earliest first, atomically.
-- KEYS: scheduled order ZSET, scheduled events HASH, outbox events HASH, outbox order ZSET, outbox sequence.
-- ARGV: now (ms since the epoch), limit, the outbox's bound. Returns how many moved: no more than the
-- outbox's bound leaves room for (the rest wait for a later call).
local waiting = redis.call('ZCARD', KEYS[4])
local room = math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - waiting)
if room <= 0 then
  return 0
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, room)
for _, id in ipairs(ids) do
  local event = redis.call('HGET', KEYS[2], id)
  -- An id already waiting in the outbox is the same event: one copy waits.
  if event and redis.call('HSETNX', KEYS[3], id, event) == 1 then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), id)
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return #ids
