-- Takes one token from a token bucket (Store::take_rate_token; the same arithmetic as store::take_rate_token).
-- KEYS: the bucket HASH (tokens, at). ARGV: now (ms), tokens per second (>= 1), keep for (ms).
-- Returns 0 when a token was taken, else the milliseconds until one is due.
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or rate
local at = tonumber(held[2]) or now
if now > at then
  tokens = math.min(rate, tokens + (now - at) * rate / 1000)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
-- %.17g keeps the fraction exactly; Redis would otherwise round a Lua number it is given.
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait
