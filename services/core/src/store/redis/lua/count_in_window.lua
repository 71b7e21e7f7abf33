-- Adds hits to a fixed window's counter and keeps it until after the window ends (Store::count_in_window).
-- KEYS: the window's counter (its name carries the window's start). ARGV: hits, keep for (ms).
-- Returns the window's count, these hits included.
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return count
