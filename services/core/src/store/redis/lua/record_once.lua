-- Records a key once until an expiry judged by the callers' clock (Store::record_once).
-- KEYS: the once key. ARGV: now, expires at (ms), ttl (ms, for PX).
-- The value is the expiry: a record whose expiry is not after `now` counts as absent.
-- Returns 1 when the key was new, 0 when it was recorded already.
local expires = tonumber(redis.call('GET', KEYS[1]) or '0')
if expires and expires > tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
