-- Top co-visits of one url: frequency desc, then recommendation asc (bytewise), leaving out the url itself, the hidden pages and,
-- for a user, the pages they clicked within the seen horizon before their newest click. Version 5.
-- Reads the keys of one shard (see covisit.lua), for a store of one shard (with several, shard-top.lua and a merge).
-- KEYS[1] the url's co-visit counts (member = url, score = frequency), KEYS[2] the marker (see covisit.lua), KEYS[3] the user's
-- recent urls (url -> ms; see covisit.lua), or KEYS[1] again for no user, KEYS[4] the visibility of pages (see visibility.lua:
-- url -> sequence, positive when hidden); ARGV[1] limit (>= 1), ARGV[2] the url, ARGV[3] the seen horizon (ms)
-- Returns url1, frequency1, url2, frequency2, ...; nil when the marker is gone.
local key, visibility, limit, url, horizon = KEYS[1], KEYS[4], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 0 then return nil end

-- The url itself is left out; so are the user's pages of the seen horizon and the hidden pages, both looked up among the pages read
-- (a user has dozens of recent pages, most of them far down the url's counts or not among them at all).
local recent, since = nil, nil
if KEYS[3] ~= key then
  local newest = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #newest > 0 then recent, since = KEYS[3], tonumber(string.format('%.0f', tonumber(newest[2]) - horizon)) end
end

-- The scores of `members` in `zset`, in order (false for none): ZMSCORE by parts, as Lua unpacks at most 7,999 values at once.
local function scores(zset, members)
  local out = {}
  for first = 1, #members, 1000 do
    for _, score in ipairs(redis.call('ZMSCORE', zset, unpack(members, first, math.min(first + 999, #members)))) do
      out[#out + 1] = score
    end
  end
  return out
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

-- Each page left out is read past, reading further until the list is `limit` long or the counts end. A user's pages are often
-- among the first (their own clicks counted there), so a read for a user starts twice as deep; doubling bounds the rounds.
local anyHidden = #redis.call('ZRANGEBYSCORE', visibility, '(0', '+inf', 'LIMIT', 0, 1) > 0
local want = recent and 2 * limit + 1 or limit + 1
while true do
  local ordered = firstInOrder(want)
  local left = {[url] = true}
  if (recent or anyHidden) and #ordered > 0 then
    local members = {}
    for k = 1, #ordered, 2 do members[#members + 1] = ordered[k] end
    if recent then
      for k, at in ipairs(scores(recent, members)) do
        if at and tonumber(at) >= since then left[members[k]] = true end
      end
    end
    if anyHidden then
      for k, state in ipairs(scores(visibility, members)) do
        if state and tonumber(state) > 0 then left[members[k]] = true end
      end
    end
  end
  local out, leftRead = {}, 0
  for k = 1, #ordered, 2 do
    local member = ordered[k]
    if left[member] then
      leftRead = leftRead + 1
    elseif #out < 2 * limit then
      out[#out + 1] = member
      out[#out + 1] = ordered[k + 1]
    end
  end
  if #out == 2 * limit or #ordered < 2 * want then return out end
  want = math.max(limit + leftRead, 2 * want)
end
