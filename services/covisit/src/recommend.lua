-- Top co-visits of one url: frequency desc, then recommendation asc (bytewise), leaving out the url itself and, for a user, the
-- pages they clicked within the seen horizon before their newest click. Version 3.
-- KEYS[1] the url's co-visit counts (member = url, score = frequency), KEYS[2] the marker (see covisit.lua), KEYS[3] the user's
-- recent urls (url -> ms; see covisit.lua), or KEYS[1] again for no user; ARGV[1] limit (>= 1), ARGV[2] the url, ARGV[3] the
-- seen horizon (ms)
-- Returns url1, frequency1, url2, frequency2, ...; nil when the marker is gone.
local key, limit, url, horizon = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 0 then return nil end

-- The pages left out; those among the counts are read past, so the list is `limit` long when the counts allow.
local excluded = {[url] = true}
local candidates = {url}
if KEYS[3] ~= key then
  local newest = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #newest > 0 then
    for _, u in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], string.format('%.0f', tonumber(newest[2]) - horizon), '+inf')) do
      if not excluded[u] then
        excluded[u] = true
        candidates[#candidates + 1] = u
      end
    end
  end
end
local skipped = 0
for _, score in ipairs(redis.call('ZMSCORE', key, unpack(candidates))) do
  if score then skipped = skipped + 1 end
end
local want = limit + skipped

-- The first `want` in order. Read by descending score, a sorted set's ties come in reverse: the ties at the cut-off are read
-- ascending, each tie group above flipped.
local above, tie
local last = redis.call('ZREVRANGE', key, want - 1, want - 1, 'WITHSCORES')
if #last == 0 then
  above, tie = redis.call('ZREVRANGE', key, 0, -1, 'WITHSCORES'), {}
else
  above = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. last[2], 'WITHSCORES')
  tie = redis.call('ZRANGEBYSCORE', key, last[2], last[2], 'WITHSCORES', 'LIMIT', 0, want - #above / 2)
end

local out = {}
local function keep(member, score)
  if #out < 2 * limit and not excluded[member] then
    out[#out + 1] = member
    out[#out + 1] = score
  end
end
local i = 1
while i <= #above do
  local j = i
  while above[j + 3] == above[i + 1] do j = j + 2 end
  for k = j, i, -2 do keep(above[k], above[k + 1]) end
  i = j + 2
end
for k = 1, #tie, 2 do keep(tie[k], tie[k + 1]) end
return out
