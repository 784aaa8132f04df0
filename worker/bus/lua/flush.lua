-- Release parked captions no pending frame holds back any more (after a frame left the
-- group without a caption: dead-lettered). KEYS: captions, frames, parked; ARGV: group.
-- Returns how many were published.
local n = 0
for _ in pairs(flush(KEYS[1], KEYS[3], oldest_pending(KEYS[2], ARGV[1]))) do n = n + 1 end
return n
