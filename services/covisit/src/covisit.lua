-- Applies a batch of clicks to the co-visit counts, atomically. Version 5 (storage version 3).
--
-- KEYS[1]          the marker set when the counts started from the stream's first click; gone = Redis lost them
-- KEYS[3i-1], KEYS[3i], KEYS[3i+1]  click i's user: history (sorted set, member = "<event_id> <url>",
--                  score = event time in ms), applied event ids (sorted set, score = event time) and
--                  the applied ids of version 4 (a set, read only: it expires on its own)
-- ARGV[1]  window (ms)    ARGV[2] allowed lateness (ms)    ARGV[3] prefix of co-visit keys
-- ARGV[4]  how long applied event ids are remembered (ms), in event time and after a user's last click
-- ARGV[5]  a user's click budget: the most clicks of one user within a window of each other
-- ARGV[6 + 3(i-1) ..]  click i: event_id, url, event time (ms)
--
-- Returns {"lost"} when the marker is gone (counting on top of lost counts would be wrong, so
-- nothing is), else per click, in order, two values: "applied", pairs counted | "duplicate", 0 |
-- "late", watermark | "budget", clicks of the user within the window around it.
--
-- Each click's outcome and counts are what applying the clicks one at a time, in batch order,
-- would give: pairs with the user's clicks already in the history on both sides, [t - window, t)
-- as "before" and (t, t + window] as "after", so the result does not depend on arrival order.
-- The watermark is the user's latest event time seen; a click older than watermark - lateness is
-- late. History older than watermark - window - lateness is trimmed; such history lies before
-- every window a non-late click can open, so trimming once per user at the end of the batch
-- counts the same as trimming after each click. Applied ids are trimmed at watermark - ARGV[4]:
-- they outlive the history, so a file replayed long after the first time is recognized as
-- duplicates, not mistaken for late clicks. Both keys of a user expire ARGV[4] after its last
-- applied click: nothing of a user who went away stays.
--
-- The budget: a click with `budget` or more applied clicks of its user within a window of it
-- (either side, inclusive) is refused and changes nothing. So no window holds more than `budget`
-- clicks of one user, a click pairs with fewer than `budget` others, and a script's work and the
-- counts one user can add are bounded.
--
-- Per user of the batch: one read of the ids and one of the history from the batch's earliest
-- window on, one write each for the history, the ids and the two trims. Per distinct pair
-- of pages: one ZINCRBY by the number of times the batch counted it.
local marker = KEYS[1]
local window, lateness, prefix, remember, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local n = (#KEYS - 1) / 3

local function ms(x) return string.format('%.0f', x) end

if redis.call('EXISTS', marker) == 0 then
  return {'lost'}
end

-- The batch's clicks, grouped by user in batch order.
local users, order = {}, {}
for i = 1, n do
  local history = KEYS[3 * i - 1]
  local u = users[history]
  if not u then
    u = {ids = KEYS[3 * i], legacy = KEYS[3 * i + 1], clicks = {}}
    users[history] = u
    order[#order + 1] = history
  end
  local a = 6 + 3 * (i - 1)
  u.clicks[#u.clicks + 1] = {i = i, id = ARGV[a], url = ARGV[a + 1], t = tonumber(ARGV[a + 2])}
end

local out = {}
local increments = {}  -- co-visit key -> member -> count
local function count(key, member)
  local m = increments[key]
  if not m then m = {}; increments[key] = m end
  m[member] = (m[member] or 0) + 1
end

for _, history in ipairs(order) do
  local u = users[history]
  local ids = {}
  local lo, hi = math.huge, -math.huge
  for k, c in ipairs(u.clicks) do
    ids[k] = c.id
    if c.t < lo then lo = c.t end
    if c.t > hi then hi = c.t end
  end
  local isSeen = redis.call('ZMSCORE', u.ids, unpack(ids))
  if redis.call('EXISTS', u.legacy) == 1 then
    local old = redis.call('SMISMEMBER', u.legacy, unpack(ids))
    for k = 1, #ids do
      if old[k] == 1 then isSeen[k] = 1 end
    end
  end
  -- Every entry any window of the batch can reach, as {time, url}, and the newest entry with them;
  -- applied clicks join them. Should the history hold nothing as recent as lo - window, its newest
  -- entry is older than every window of the batch: it can make no click late, and a batch that
  -- applies a click trims by that click's time or later, so it is not needed.
  local flat = redis.call('ZRANGEBYSCORE', history, ms(lo - window), '+inf', 'WITHSCORES')
  local watermark = #flat > 0 and tonumber(flat[#flat]) or -math.huge
  local entries = {}
  for k = 1, #flat, 2 do
    local member = flat[k]
    entries[#entries + 1] = {t = tonumber(flat[k + 1]), url = string.sub(member, string.find(member, ' ', 1, true) + 1)}
  end
  local added, addedIds = {}, {}
  local inBatch = {}
  for k, c in ipairs(u.clicks) do
    local near = 0
    for _, e in ipairs(entries) do
      if e.t >= c.t - window and e.t <= c.t + window then near = near + 1 end
    end
    if isSeen[k] or inBatch[c.id] then
      out[2 * c.i - 1], out[2 * c.i] = 'duplicate', 0
    elseif c.t < watermark - lateness then
      out[2 * c.i - 1], out[2 * c.i] = 'late', ms(watermark)
    elseif near >= budget then
      out[2 * c.i - 1], out[2 * c.i] = 'budget', near
    else
      local counted = 0
      for _, e in ipairs(entries) do
        if e.t < c.t and e.t >= c.t - window then
          count(prefix .. e.url, c.url)
          counted = counted + 1
        elseif e.t > c.t and e.t <= c.t + window then
          count(prefix .. c.url, e.url)
          counted = counted + 1
        end
      end
      entries[#entries + 1] = {t = c.t, url = c.url}
      inBatch[c.id] = true
      if c.t > watermark then watermark = c.t end
      added[#added + 1] = ms(c.t)
      added[#added + 1] = c.id .. ' ' .. c.url
      addedIds[#addedIds + 1] = ms(c.t)
      addedIds[#addedIds + 1] = c.id
      out[2 * c.i - 1], out[2 * c.i] = 'applied', counted
    end
  end
  if #addedIds > 0 then
    redis.call('ZADD', history, unpack(added))
    redis.call('ZADD', u.ids, unpack(addedIds))
    redis.call('ZREMRANGEBYSCORE', history, '-inf', '(' .. ms(watermark - window - lateness))
    redis.call('ZREMRANGEBYSCORE', u.ids, '-inf', '(' .. ms(watermark - remember))
    redis.call('PEXPIRE', history, remember)
    redis.call('PEXPIRE', u.ids, remember)
  end
end

for key, members in pairs(increments) do
  for member, by in pairs(members) do
    redis.call('ZINCRBY', key, by, member)
  end
end

return out
