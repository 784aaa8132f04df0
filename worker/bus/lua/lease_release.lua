-- KEYS[1] owner:{src}; ARGV[1] the capture's id. Deletes the lease only if it is ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
