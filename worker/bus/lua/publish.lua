-- Publish one caption and acknowledge its frame (worker/bus/publish.py says each step).
-- KEYS: captions:{src}, frames:{src}, done:{src}, parked:{src}.
-- ARGV: group, frame id, seq, normalised text, maxlen (0: a file job), done kept,
--       then the caption's field, value pairs.
-- Returns the new caption's entry id, 'parked', 'late', or false for a duplicate.
local captions, frames, done, parked = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, frame, seq, norm = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxlen = tonumber(ARGV[5])
local added = redis.call('ZADD', done, 'NX', seq, seq)
redis.call('XACK', frames, group, frame)
if added == 0 then return false end
redis.call('ZREMRANGEBYRANK', done, 0, -tonumber(ARGV[6]) - 1)
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
if maxlen > 0 then
  local last = newest(captions)
  if last and last['seq'] and tonumber(last['seq']) > tonumber(seq) then return 'late' end
  return append(captions, maxlen, frame, norm, fields, last)
end
local open = oldest_pending(frames, group)
if redis.call('ZCARD', parked) == 0 and not (open and before(open, frame)) then
  return append(captions, 0, frame, norm, fields, newest(captions))  -- nothing to wait for
end
local item = {frame, norm}
for i = 1, #fields do item[#item + 1] = fields[i] end
redis.call('ZADD', parked, seq, cmsgpack.pack(item))
return flush(captions, parked, open)[frame] or 'parked'
