-- Top co-visits of one url: frequency desc, then recommendation asc (bytewise). Version 2.
-- KEYS[1] the url's co-visit counts (member = url, score = frequency), KEYS[2] the marker (see covisit.lua); ARGV[1] limit (>= 1)
-- Returns url1, frequency1, url2, frequency2, ...; nil when the marker is gone.
-- Read by descending score, a sorted set's ties come in reverse: the ties at the cut-off are read ascending, each tie group above flipped.
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
