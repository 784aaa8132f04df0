-- KEYS[1] frames:{src}; ARGV: group, consumer. A stopping worker leaves the group of
-- each source it holds nothing of, so the group lists the workers there are, not
-- every worker there ever was. 1: left; 0: it holds frames (kept); -1: no group.
local ok, rows = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok then return -1 end
if #rows > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
