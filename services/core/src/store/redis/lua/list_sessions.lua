-- A device's open session states and its newest ended summaries: one round trip.
-- KEYS: sessions HASH, history-order ZSET, history HASH. ARGV: limit (at least 1).
local ended = {}
local ids = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
if #ids > 0 then
  ended = redis.call('HMGET', KEYS[3], unpack(ids))
end
return {redis.call('HVALS', KEYS[1]), ended}
