-- Command records in id order from an index (every command, or the queued ones): one round trip.
-- KEYS: index ZSET (scored by id), commands HASH. ARGV: lowest score (ZRANGEBYSCORE syntax), limit.
-- Returns the records; a nil is an index entry without a record.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
if #ids == 0 then
  return {}
end
return redis.call('HMGET', KEYS[2], unpack(ids))
