-- KEYS[1] frames:{src}; ARGV: group, the gone consumer, this consumer, min idle (ms),
-- count. Claims the gone consumer's frames idle at least that long (XCLAIM: each one's
-- delivery count goes up, so a frame that kills its workers is still given up on);
-- frames deleted from the stream while pending (a live stream's MAXLEN) are acked.
-- The gone consumer is deleted from the group once it holds nothing (a deleted
-- consumer that turns out alive is re-created by its next read; it held nothing to
-- lose). Returns {id, {field, value, ...}, deliveries} per frame taken.
local key, group, gone, me = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local rows = redis.call('XPENDING', key, group, 'IDLE', ARGV[4], '-', '+', ARGV[5], gone)
local out = {}
if #rows > 0 then
  local ids, delivered = {}, {}
  for i, row in ipairs(rows) do
    ids[i] = row[1]
    delivered[row[1]] = row[4]
  end
  local got = {}
  for _, entry in ipairs(redis.call('XCLAIM', key, group, me, ARGV[4], unpack(ids))) do
    if entry then
      got[entry[1]] = true
      out[#out + 1] = {entry[1], entry[2], delivered[entry[1]] + 1}
    end
  end
  for _, id in ipairs(ids) do
    if not got[id] then redis.call('XACK', key, group, id) end
  end
end
if #redis.call('XPENDING', key, group, '-', '+', 1, gone) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', key, group, gone)
end
return out
