-- Applies one slot group of a WriteBatch atomically (the op list is built by commit.rs).
-- KEYS: every key the ops name. ARGV: ops, each an op code, then its key arguments
-- (as indexes into KEYS), then its other arguments.
-- Every check (FENCE, OUTBOX bound) runs before any write, so a refused group writes nothing.
-- FENCE lease fencing node epoch ttl mode: checks the device's fencing record (HASH holder, epoch),
-- then renews the lease (PX, never shortened), releases it, or only checks.
-- QUOTA usage device path bytes max-device-bytes max-device-items max-total: checks, then charges, a
-- device upload against the upload quotas (the usage HASH: keys.rs upload_usage), replacing what the path held.
-- RELEASE usage path: the device upload at path, if any, no longer counts.
-- PRUNE order history keep: keeps the device's newest `keep` ended sessions (by start, then id).
-- SETPXAT key value at: sets the key to expire at `at` (ms since the epoch; notification records).
-- DEL key: deletes the key (an operator's repository delete).
-- LATEST pointer request at expires: the device's most recently sent request, unless the pointer names one
-- sent later (a later write of an older record leaves it); it expires with the record (PXAT).
-- RECORD values revisions labels_of keys key expected prefix json labels mode: a record of a role
-- (model::Record). Checked first: with `expected` not empty, the record's revision (0 when absent, as earlier
-- RECORD ops of the group leave it) must be `expected`, else {'CONFLICT', revisions key, record key}. Then
-- `put` stores `json`, raises the revision, and moves the key between the label ZSETs (`prefix` .. label,
-- in the record's slot) from the labels it had to `labels` (a JSON array); `del` removes all of it.
-- SCHEDULE order events due id event: keeps the event until `due` (ms since the epoch); an id already
-- scheduled moves to the new time.
-- TERMS terms prefix device json: moves the device between the inventory index's term ZSETs (`prefix` ..
-- term), from the terms `terms` held to the JSON array `json`, which `terms` then holds (standalone server only:
-- the term keys are not in KEYS).
-- Returns {'OK', keys deleted by DEL}, {'FENCED'}, {'FULL', events waiting in the shard} or {'QUOTA', quota label}.

local ARITY = {
  SET = 2, SETPXAT = 3, HSET = 3, HDEL = 2, ZADD = 3, ZREM = 2, SADD = 2, SREM = 2, ZREMSCORE = 2,
  RAISE = 2, OPEN = 3, FENCE = 6, PRUNE = 3, QUOTA = 7, RELEASE = 2, DEL = 1, SCHEDULE = 5, LATEST = 4,
  TERMS = 4, RECORD = 10,
}

local function key(index)
  return KEYS[tonumber(index)]
end

local function number_of(hash, field)
  return tonumber(redis.call('HGET', hash, field) or '0')
end

-- The quota a charge would pass (as quota_refusal in store/mod.rs), or nil.
local function quota_refusal(usage, device, path, bytes, max_device_bytes, max_device_items, max_total)
  local previous = tonumber(redis.call('HGET', usage, 'size:' .. path) or '-1')
  local own_bytes, own_items, released = 0, 0, 0
  if previous >= 0 then
    released = previous
    if redis.call('HGET', usage, 'owner:' .. path) == device then
      own_bytes, own_items = previous, 1
    end
  end
  if number_of(usage, 'total') - released + bytes > max_total then
    return 'total_bytes'
  end
  if number_of(usage, 'bytes:' .. device) - own_bytes + bytes > max_device_bytes then
    return 'device_bytes'
  end
  if number_of(usage, 'items:' .. device) - own_items + 1 > max_device_items then
    return 'device_items'
  end
  return nil
end

local function release(usage, path)
  local size = redis.call('HGET', usage, 'size:' .. path)
  if not size then
    return
  end
  local owner = redis.call('HGET', usage, 'owner:' .. path)
  redis.call('HDEL', usage, 'size:' .. path, 'owner:' .. path)
  redis.call('HINCRBY', usage, 'bytes:' .. owner, -tonumber(size))
  redis.call('HINCRBY', usage, 'items:' .. owner, -1)
  redis.call('HINCRBY', usage, 'total', -tonumber(size))
end

-- How many arguments follow the op code at i (OUTBOX carries a count of id/event pairs).
local function arity(i)
  local op = ARGV[i]
  if op == 'OUTBOX' then
    return 5 + 2 * tonumber(ARGV[i + 5])
  end
  local count = ARITY[op]
  if count == nil then
    error('unknown commit op ' .. tostring(op))
  end
  return count
end

-- Revisions as the group's RECORD ops leave them, for several writes of one record in one group.
local planned = {}

-- Checks. FENCE: the device's lease is held by node under epoch.
-- OUTBOX events order sequence limit count id event ...: the new events fit under the shard's bound.
local i = 1
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'FENCE' then
    -- The fencing record, not the lease's PX: a lease that lapsed while nobody took it over saw no
    -- other writer (a grant to another node raises the epoch), so its holder may still commit.
    local fencing = key(ARGV[i + 2])
    if redis.call('HGET', fencing, 'holder') ~= ARGV[i + 3] or redis.call('HGET', fencing, 'epoch') ~= ARGV[i + 4] then
      return {'FENCED'}
    end
  elseif op == 'OUTBOX' then
    local events = key(ARGV[i + 1])
    local waiting = redis.call('ZCARD', key(ARGV[i + 2]))
    local new = 0
    for j = i + 6, i + 5 + 2 * tonumber(ARGV[i + 5]), 2 do
      if redis.call('HEXISTS', events, ARGV[j]) == 0 then
        new = new + 1
      end
    end
    if waiting + new > tonumber(ARGV[i + 4]) then
      return {'FULL', waiting}
    end
  elseif op == 'QUOTA' then
    local refused = quota_refusal(key(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]),
      tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]))
    if refused then
      return {'QUOTA', refused}
    end
  elseif op == 'RECORD' then
    local revisions, record = key(ARGV[i + 2]), ARGV[i + 5]
    local slot = revisions .. '\n' .. record
    local current = planned[slot] or tonumber(redis.call('HGET', revisions, record) or '0')
    local expected = ARGV[i + 6]
    if expected ~= '' and tonumber(expected) ~= current then
      return {'CONFLICT', revisions, record}
    end
    if ARGV[i + 10] == 'put' then
      planned[slot] = current + 1
    else
      planned[slot] = 0
    end
  end
  i = i + 1 + arity(i)
end

-- Writes, in order.
local deleted = 0
i = 1
while i <= #ARGV do
  local op = ARGV[i]
  local a = i + 1
  if op == 'SET' then
    redis.call('SET', key(ARGV[a]), ARGV[a + 1])
  elseif op == 'SETPXAT' then
    redis.call('SET', key(ARGV[a]), ARGV[a + 1], 'PXAT', ARGV[a + 2])
  elseif op == 'HSET' then
    redis.call('HSET', key(ARGV[a]), ARGV[a + 1], ARGV[a + 2])
  elseif op == 'HDEL' then
    redis.call('HDEL', key(ARGV[a]), ARGV[a + 1])
  elseif op == 'ZADD' then
    redis.call('ZADD', key(ARGV[a]), ARGV[a + 1], ARGV[a + 2])
  elseif op == 'ZREM' then
    redis.call('ZREM', key(ARGV[a]), ARGV[a + 1])
  elseif op == 'SADD' then
    redis.call('SADD', key(ARGV[a]), ARGV[a + 1])
  elseif op == 'SREM' then
    redis.call('SREM', key(ARGV[a]), ARGV[a + 1])
  elseif op == 'ZREMSCORE' then
    redis.call('ZREMRANGEBYSCORE', key(ARGV[a]), ARGV[a + 1], ARGV[a + 1])
  elseif op == 'RAISE' then
    -- A counter only grows: ids a batch wrote stay below the next one handed out.
    local counter = key(ARGV[a])
    if tonumber(ARGV[a + 1]) > tonumber(redis.call('GET', counter) or '0') then
      redis.call('SET', counter, ARGV[a + 1])
    end
  elseif op == 'OPEN' then
    -- OPEN sessions index device: the shard's index lists the device while it has open sessions.
    if redis.call('EXISTS', key(ARGV[a])) == 1 then
      redis.call('SADD', key(ARGV[a + 1]), ARGV[a + 2])
    else
      redis.call('SREM', key(ARGV[a + 1]), ARGV[a + 2])
    end
  elseif op == 'OUTBOX' then
    -- An id already waiting is the same event (a retried batch): one copy waits.
    local events, order, sequence = key(ARGV[a]), key(ARGV[a + 1]), key(ARGV[a + 2])
    for j = a + 5, a + 4 + 2 * tonumber(ARGV[a + 4]), 2 do
      if redis.call('HSETNX', events, ARGV[j], ARGV[j + 1]) == 1 then
        redis.call('ZADD', order, redis.call('INCR', sequence), ARGV[j])
      end
    end
  elseif op == 'QUOTA' then
    local usage, device, path, bytes = key(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    release(usage, path)
    redis.call('HSET', usage, 'size:' .. path, bytes, 'owner:' .. path, device)
    redis.call('HINCRBY', usage, 'bytes:' .. device, bytes)
    redis.call('HINCRBY', usage, 'items:' .. device, 1)
    redis.call('HINCRBY', usage, 'total', bytes)
  elseif op == 'RELEASE' then
    release(key(ARGV[a]), ARGV[a + 1])
  elseif op == 'DEL' then
    deleted = deleted + redis.call('DEL', key(ARGV[a]))
  elseif op == 'LATEST' then
    local pointer = key(ARGV[a])
    if tonumber(redis.call('HGET', pointer, 'at') or '-1') <= tonumber(ARGV[a + 2]) then
      redis.call('HSET', pointer, 'request_id', ARGV[a + 1], 'at', ARGV[a + 2])
      redis.call('PEXPIREAT', pointer, ARGV[a + 3])
    end
  elseif op == 'TERMS' then
    local terms, prefix, device = key(ARGV[a]), ARGV[a + 1], ARGV[a + 2]
    local joined = {}
    for _, term in ipairs(cjson.decode(ARGV[a + 3])) do
      joined[term] = true
    end
    for _, term in ipairs(cjson.decode(redis.call('GET', terms) or '[]')) do
      if joined[term] then
        joined[term] = nil
      else
        redis.call('ZREM', prefix .. term, device)
      end
    end
    for term in pairs(joined) do
      redis.call('ZADD', prefix .. term, 0, device)
    end
    redis.call('SET', terms, ARGV[a + 3])
  elseif op == 'RECORD' then
    local values, revisions, labels_of, keys = key(ARGV[a]), key(ARGV[a + 1]), key(ARGV[a + 2]), key(ARGV[a + 3])
    local record, prefix, mode = ARGV[a + 4], ARGV[a + 6], ARGV[a + 9]
    local joined = {}
    if mode == 'put' then
      for _, label in ipairs(cjson.decode(ARGV[a + 8])) do
        joined[label] = true
      end
    end
    for _, label in ipairs(cjson.decode(redis.call('HGET', labels_of, record) or '[]')) do
      if joined[label] then
        joined[label] = nil
      else
        redis.call('ZREM', prefix .. label, record)
      end
    end
    for label in pairs(joined) do
      redis.call('ZADD', prefix .. label, 0, record)
    end
    if mode == 'put' then
      redis.call('HSET', values, record, ARGV[a + 7])
      redis.call('HINCRBY', revisions, record, 1)
      redis.call('HSET', labels_of, record, ARGV[a + 8])
      redis.call('ZADD', keys, 0, record)
    else
      redis.call('HDEL', values, record)
      redis.call('HDEL', revisions, record)
      redis.call('HDEL', labels_of, record)
      redis.call('ZREM', keys, record)
    end
  elseif op == 'SCHEDULE' then
    redis.call('ZADD', key(ARGV[a]), ARGV[a + 2], ARGV[a + 3])
    redis.call('HSET', key(ARGV[a + 1]), ARGV[a + 3], ARGV[a + 4])
  elseif op == 'PRUNE' then
    local order, history = key(ARGV[a]), key(ARGV[a + 1])
    local excess = redis.call('ZCARD', order) - tonumber(ARGV[a + 2])
    -- In chunks: a history grown before pruning existed may hold more ids than one unpack takes.
    while excess > 0 do
      local oldest = redis.call('ZRANGE', order, 0, math.min(excess, 1000) - 1)
      redis.call('ZREM', order, unpack(oldest))
      redis.call('HDEL', history, unpack(oldest))
      excess = excess - #oldest
    end
  elseif op == 'FENCE' then
    local mode, lease = ARGV[a + 5], key(ARGV[a])
    if mode == 'release' then
      redis.call('DEL', lease)
      redis.call('HDEL', key(ARGV[a + 1]), 'holder')
    elseif mode == 'renew' and redis.call('PTTL', lease) < tonumber(ARGV[a + 4]) then
      redis.call('SET', lease, ARGV[a + 2], 'PX', ARGV[a + 4])
    end
  end
  i = a + arity(i)
end
return {'OK', deleted}
