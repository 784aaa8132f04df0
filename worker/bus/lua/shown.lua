-- What a source shows (the caption hold), written only when newer than what is there.
-- KEYS: shown:{src}. ARGV: seq, model, tokens, pooled (float16 bytes), ttl ms.
-- Returns 1 when written, 0 when Redis already holds this frame's state or a newer one.
local seq = redis.call('HGET', KEYS[1], 'seq')
if seq and tonumber(seq) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'model', ARGV[2], 'tokens', ARGV[3],
           'pooled', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
