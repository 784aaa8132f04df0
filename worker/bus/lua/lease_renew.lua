-- A capture's lease on its source (stream/capture/lease.py).
-- KEYS[1] owner:{src}; ARGV[1] the capture's id, ARGV[2] lease ms.
-- 1: ours (taken or renewed), 0: another capture's.
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
