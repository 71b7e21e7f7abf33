-- Removes a device's keys and its entry in its shard's open-sessions index (and, on a standalone
-- server, in the device index) atomically. The id counters and the lease epoch stay; the lease and
-- its holder go, so a node still holding a fence of the device is fenced.
-- KEYS: device, open-devices index, fencing, the other keys to delete (the device's index terms last), then the
-- device index when ARGV[2] is '1'.
-- ARGV: device id, '1' when the last key is the device index, and then the prefix of the inventory index's term
-- keys: the device leaves every term its terms key lists (their keys are not in KEYS: standalone server only).
-- Returns 1 when the device existed.
local existed = redis.call('EXISTS', KEYS[1])
local last = #KEYS
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[last], ARGV[1])
  last = last - 1
  for _, term in ipairs(cjson.decode(redis.call('GET', KEYS[last]) or '[]')) do
    redis.call('ZREM', ARGV[3] .. term, ARGV[1])
  end
end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], 'holder')
redis.call('DEL', KEYS[1], unpack(KEYS, 4, last))
return existed
