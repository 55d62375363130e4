-- Top co-visits of one url: frequency desc, then recommendation asc (bytewise), leaving out the url itself, the hidden pages and,
-- for a user, the pages they clicked within the seen horizon before their newest click. Version 4.
-- Reads the keys of one shard (see covisit.lua), for a store of one shard (with several, shard-top.lua and a merge).
-- KEYS[1] the url's co-visit counts (member = url, score = frequency), KEYS[2] the marker (see covisit.lua), KEYS[3] the user's
-- recent urls (url -> ms; see covisit.lua), or KEYS[1] again for no user, KEYS[4] the visibility of pages (see visibility.lua:
-- url -> sequence, positive when hidden); ARGV[1] limit (>= 1), ARGV[2] the url, ARGV[3] the seen horizon (ms)
-- Returns url1, frequency1, url2, frequency2, ...; nil when the marker is gone.
local key, visibility, limit, url, horizon = KEYS[1], KEYS[4], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
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

-- The first `want` in order, flat (member, score, ...). Read by descending score, a sorted set's ties come in reverse: the ties
-- at the cut-off are read ascending, each tie group above flipped.
local function firstInOrder(want)
  local above, tie
  local last = redis.call('ZREVRANGE', key, want - 1, want - 1, 'WITHSCORES')
  if #last == 0 then
    above, tie = redis.call('ZREVRANGE', key, 0, -1, 'WITHSCORES'), {}
  else
    above = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. last[2], 'WITHSCORES')
    tie = redis.call('ZRANGEBYSCORE', key, last[2], last[2], 'WITHSCORES', 'LIMIT', 0, want - #above / 2)
  end
  local ordered = {}
  local i = 1
  while i <= #above do
    local j = i
    while above[j + 3] == above[i + 1] do j = j + 2 end
    for k = j, i, -2 do
      ordered[#ordered + 1] = above[k]
      ordered[#ordered + 1] = above[k + 1]
    end
    i = j + 2
  end
  for k = 1, #tie do ordered[#ordered + 1] = tie[k] end
  return ordered
end

-- Hidden pages are found among those read (no hidden page at all: one lookup, and the list is read once as before); each
-- found one is read past like the user's pages, reading further until the list is `limit` long or the counts end.
local anyHidden = #redis.call('ZRANGEBYSCORE', visibility, '(0', '+inf', 'LIMIT', 0, 1) > 0
local want = limit + skipped
while true do
  local ordered = firstInOrder(want)
  local hidden, hiddenRead = {}, 0
  if anyHidden and #ordered > 0 then
    local members = {}
    for k = 1, #ordered, 2 do members[#members + 1] = ordered[k] end
    for k, state in ipairs(redis.call('ZMSCORE', visibility, unpack(members))) do
      if state and tonumber(state) > 0 then
        hidden[members[k]] = true
        if not excluded[members[k]] then hiddenRead = hiddenRead + 1 end
      end
    end
  end
  local out = {}
  for k = 1, #ordered, 2 do
    local member = ordered[k]
    if #out < 2 * limit and not excluded[member] and not hidden[member] then
      out[#out + 1] = member
      out[#out + 1] = ordered[k + 1]
    end
  end
  if #out == 2 * limit or #ordered < 2 * want then return out end
  -- Every hidden page read so far is read past; doubling bounds the rounds when more hide further down.
  want = math.max(limit + skipped + hiddenRead, 2 * want)
end
