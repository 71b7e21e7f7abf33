-- Everything a session step reads, after granting or renewing the device's lease: one round trip.
-- KEYS: lease (STRING node id, PX), fencing (HASH epoch, holder), device, mirror, queued, commands, last-alert-id.
-- ARGV: node, ttl (ms), queue limit, count of live nodes, the live nodes, then the awaited command ids.
-- The lease is the asker's when the fencing record names it (renewed, same epoch, even if its PX
-- lapsed: nobody took it meanwhile); another node's while its PX runs and it is live (refused);
-- otherwise granted under the next epoch (free, lapsed, released, or held by a node not live).
-- Returns {'UNKNOWN'} (nothing leased), {'HELD', holder, epoch}, or
-- {'LOADED', epoch, outcome, device, mirror, queued records, awaited records, last alert id}.

if redis.call('EXISTS', KEYS[3]) == 0 then
  return {'UNKNOWN'}
end

local node, ttl = ARGV[1], tonumber(ARGV[2])
local live_count = tonumber(ARGV[4])
local holder = redis.call('GET', KEYS[1])
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local outcome
if redis.call('HGET', KEYS[2], 'holder') == node and epoch and (not holder or holder == node) then
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
  epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
  redis.call('HSET', KEYS[2], 'holder', node)
end
-- A renewal never shortens the lease; a grant sets it.
if outcome ~= 'renewed' or redis.call('PTTL', KEYS[1]) < ttl then
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
