-- Everything a session step reads, after granting or renewing the device's lease: one round trip.
-- KEYS: lease, lease-epoch, device, mirror, queued, commands, last-alert-id.
-- ARGV: node, ttl (ms), queue limit, count of live nodes, the live nodes, then the awaited command ids.
-- Returns {'UNKNOWN'} (nothing leased), {'HELD', holder, epoch}, or
-- {'LOADED', epoch, outcome, device, mirror, queued records, awaited records, last alert id}.

if redis.call('EXISTS', KEYS[3]) == 0 then
  return {'UNKNOWN'}
end

local node, ttl = ARGV[1], ARGV[2]
local live_count = tonumber(ARGV[4])
local holder = redis.call('GET', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
local outcome
if holder == node and epoch then
  redis.call('PEXPIRE', KEYS[1], ttl)
  outcome = 'renewed'
else
  if holder and holder ~= node then
    for i = 5, 4 + live_count do
      if ARGV[i] == holder then
        return {'HELD', holder, epoch or '0'}
      end
    end
    outcome = 'taken_over'
  else
    outcome = 'granted'
  end
  epoch = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], node, 'PX', ttl)
end

local queued = {}
local limit = tonumber(ARGV[3])
if limit > 0 then
  local ids = redis.call('ZRANGE', KEYS[5], 0, limit - 1)
  if #ids > 0 then
    queued = redis.call('HMGET', KEYS[6], unpack(ids))
  end
end
local awaited = {}
local first_awaited = 5 + live_count
if #ARGV >= first_awaited then
  awaited = redis.call('HMGET', KEYS[6], unpack(ARGV, first_awaited))
end
return {
  'LOADED', tostring(epoch), outcome, redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4]),
  queued, awaited, redis.call('GET', KEYS[7]) or '0',
}
