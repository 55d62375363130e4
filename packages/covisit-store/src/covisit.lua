-- Applies a batch of clicks of one shard to the co-visit counts, atomically. Version 8 (storage version 4).
-- Every key is one shard's ("<prefix>{s/S}:..."), so one hash slot of a Redis Cluster.
-- KEYS: [1] the shard's marker (gone = Redis lost the counts); per click i, its user's [4i-2] history ("<event_id> <url>" -> ms),
--   [4i-1] applied ids (id -> ms), [4i] recent urls (url -> its newest click's ms, back to the seen horizon from the user's newest
--   click: what Recommendation leaves out) and [4i+1] the erasure tombstone (member "seq" -> the CLICKS sequence of the user's latest
--   UserDeleted; see erase.lua); then the co-visit counts the batch may add to ([4n+2] ..: "<co-visit key prefix><url>").
-- ARGV: [1] window (ms), [2] allowed lateness (ms), [3] co-visit key prefix, [4] how long applied ids are remembered (ms),
--   [5] a user's click budget, [6] the seen horizon (ms), [7] the number of clicks n; [8 + 4(i-1) ..] click i: event_id, url,
--   event time (ms), the CLICKS sequence of its message
-- Returns {"lost"}; {"undeclared", url, ...} when a count it would add to is not among KEYS (nothing changed: run it again with
-- them); else per click two values: "applied", pairs | "duplicate", 0 | "late", watermark | "budget", clicks near it
--   | "erased", tombstone (its message is not after the user's erasure: it changes nothing).
-- Each click gets the outcome applying the clicks one at a time would give it; services/covisit/README.md says why that is exact.
local marker = KEYS[1]
local window, lateness, prefix, remember, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local horizon = tonumber(ARGV[6])
local n = tonumber(ARGV[7])

local function ms(x) return string.format('%.0f', x) end

if redis.call('EXISTS', marker) == 0 then
  return {'lost'}
end

-- The batch's clicks, grouped by user in batch order.
local users, order = {}, {}
for i = 1, n do
  local history = KEYS[4 * i - 2]
  local u = users[history]
  if not u then
    u = {ids = KEYS[4 * i - 1], recent = KEYS[4 * i], erased = KEYS[4 * i + 1], clicks = {}}
    users[history] = u
    order[#order + 1] = history
  end
  local a = 8 + 4 * (i - 1)
  u.clicks[#u.clicks + 1] = {i = i, id = ARGV[a], url = ARGV[a + 1], t = tonumber(ARGV[a + 2]), seq = tonumber(ARGV[a + 3])}
end

local declared = {}
for k = 4 * n + 2, #KEYS do declared[KEYS[k]] = true end
local undeclared, missing = {}, {}

local out = {}
local increments = {}  -- co-visit key -> member -> count
local writes = {}  -- the users' writes, made once every count is known to be declared
local function count(key, member)
  if not declared[key] and not undeclared[key] then
    undeclared[key] = true
    missing[#missing + 1] = string.sub(key, #prefix + 1)
  end
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
  -- A message at or before the user's erasure (a redelivery) belongs to the erased user: one read per user of the batch.
  local tombstone = redis.call('ZMSCORE', u.erased, 'seq')[1]
  local erasedThrough = tombstone and tonumber(tombstone) or -1
  local isSeen = redis.call('ZMSCORE', u.ids, unpack(ids))
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
  local added, addedIds, addedUrls = {}, {}, {}
  local inBatch = {}
  for k, c in ipairs(u.clicks) do
    local near = 0
    for _, e in ipairs(entries) do
      if e.t >= c.t - window and e.t <= c.t + window then near = near + 1 end
    end
    if c.seq <= erasedThrough then
      out[2 * c.i - 1], out[2 * c.i] = 'erased', ms(erasedThrough)
    elseif isSeen[k] or inBatch[c.id] then
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
      addedUrls[#addedUrls + 1] = ms(c.t)
      addedUrls[#addedUrls + 1] = c.url
      out[2 * c.i - 1], out[2 * c.i] = 'applied', counted
    end
  end
  if #addedIds > 0 then
    writes[#writes + 1] = {history = history, u = u, added = added, addedIds = addedIds, addedUrls = addedUrls, watermark = watermark}
  end
end

if #missing > 0 then
  table.insert(missing, 1, 'undeclared')
  return missing
end

for _, w in ipairs(writes) do
  local history, u, added, addedIds, addedUrls, watermark = w.history, w.u, w.added, w.addedIds, w.addedUrls, w.watermark
  redis.call('ZADD', history, unpack(added))
  redis.call('ZADD', u.ids, unpack(addedIds))
  redis.call('ZREMRANGEBYSCORE', history, '-inf', '(' .. ms(watermark - window - lateness))
  redis.call('ZREMRANGEBYSCORE', u.ids, '-inf', '(' .. ms(watermark - remember))
  redis.call('PEXPIRE', history, remember)
  redis.call('PEXPIRE', u.ids, remember)
  -- GT: a url keeps the time of its newest click, whatever order they came in.
  redis.call('ZADD', u.recent, 'GT', unpack(addedUrls))
  redis.call('ZREMRANGEBYSCORE', u.recent, '-inf', '(' .. ms(watermark - horizon))
  redis.call('PEXPIRE', u.recent, remember)
end

for key, members in pairs(increments) do
  for member, by in pairs(members) do
    redis.call('ZINCRBY', key, by, member)
  end
end

return out
