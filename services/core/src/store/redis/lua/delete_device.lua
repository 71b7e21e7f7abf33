-- Removes a device's keys and its entry in its shard's open-sessions index (and, on a standalone
-- server, in the device index) atomically. The id counters and the lease epoch stay; the lease and
-- its holder go, so a node still holding a fence of the device is fenced.
-- KEYS: device, open-devices index, fencing, the other keys to delete, then the device index when ARGV[2] is '1'.
-- ARGV: device id, '1' when the last key is the device index. Returns 1 when the device existed.
local existed = redis.call('EXISTS', KEYS[1])
local last = #KEYS
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[last], ARGV[1])
  last = last - 1
end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], 'holder')
redis.call('DEL', KEYS[1], unpack(KEYS, 4, last))
return existed
