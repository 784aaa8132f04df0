-- Shared by publish.lua and flush.lua (prepended to each): stream-id order, the
-- oldest frame pending in the group, the newest caption, append (assigns segment_id),
-- and flush (publishes parked captions nothing older holds back). A parked caption is
-- the msgpack of {frame id, norm, field, value, ...}.
local function stream_id(id)
  local ms, sq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(sq)
end
local function before(a, b)
  local am, as = stream_id(a)
  local bm, bs = stream_id(b)
  return am < bm or (am == bm and as < bs)
end
local function oldest_pending(frames, group)
  local got = redis.pcall('XPENDING', frames, group, '-', '+', 1)
  if type(got) ~= 'table' or got.err or #got == 0 then return nil end
  return got[1][1]
end
local function newest(captions)
  local last = redis.call('XREVRANGE', captions, '+', '-', 'COUNT', 1)
  if #last == 0 then return nil end
  local out, fields = {}, last[1][2]
  for i = 1, #fields, 2 do out[fields[i]] = fields[i + 1] end
  return out
end
local function append(captions, maxlen, frame, norm, fields, last)
  local segment = 0
  if last and last['segment_id'] then
    segment = tonumber(last['segment_id'])
    if last['norm'] ~= norm then segment = segment + 1 end
  end
  local args = {captions}
  if maxlen > 0 then
    table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, maxlen)
  end
  table.insert(args, '*')
  for i = 1, #fields do table.insert(args, fields[i]) end
  table.insert(args, 'norm'); table.insert(args, norm)
  table.insert(args, 'segment_id'); table.insert(args, tostring(segment))
  table.insert(args, 'frame'); table.insert(args, frame)
  return redis.call('XADD', unpack(args))
end
local function flush(captions, parked, open)
  local ids = {}
  while true do
    local head = redis.call('ZRANGE', parked, 0, 0)
    if #head == 0 then break end
    local item = cmsgpack.unpack(head[1])
    if open and before(open, item[1]) then break end
    redis.call('ZREMRANGEBYRANK', parked, 0, 0)
    local fields = {}
    for i = 3, #item do fields[#fields + 1] = item[i] end
    ids[item[1]] = append(captions, 0, item[1], item[2], fields, newest(captions))
  end
  return ids
end
