-- Top co-visits of one url: frequency desc, then recommendation asc (bytewise). Version 2.
--
-- KEYS[1]  co-visit counts of the url: sorted set, member = recommended url, score = frequency
-- KEYS[2]  the marker of counts complete from the stream's first click (see covisit.lua)
-- ARGV[1]  limit (>= 1)
-- Returns a flat list: url1, frequency1, url2, frequency2, ...; nil when the marker is gone.
--
-- A sorted set breaks ties by member, but in reverse when read in descending score order; this
-- reads the ties at the cut-off in ascending order and flips each tie group above it.
local key, limit = KEYS[1], tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 0 then return nil end

local above, tie
local last = redis.call('ZREVRANGE', key, limit - 1, limit - 1, 'WITHSCORES')
if #last == 0 then
  above, tie = redis.call('ZREVRANGE', key, 0, -1, 'WITHSCORES'), {}
else
  above = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. last[2], 'WITHSCORES')
  tie = redis.call('ZRANGEBYSCORE', key, last[2], last[2], 'WITHSCORES', 'LIMIT', 0, limit - #above / 2)
end

local out = {}
local i = 1
while i <= #above do
  local j = i
  while above[j + 3] == above[i + 1] do j = j + 2 end
  for k = j, i, -2 do
    out[#out + 1] = above[k]
    out[#out + 1] = above[k + 1]
  end
  i = j + 2
end
for k = 1, #tie do out[#out + 1] = tie[k] end
return out
