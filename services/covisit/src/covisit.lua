-- Applies one click to the co-visit counts, atomically. Version 3.
--
-- KEYS[1]  history of the user: sorted set, member = "<event_id> <url>", score = event time (ms)
-- KEYS[2]  event ids of the user applied so far: set, expires ARGV[7] ms after the user's last click
-- KEYS[3]  the marker set when the counts started from the stream's first click; gone = Redis lost them
-- ARGV[1]  event_id    ARGV[2] url    ARGV[3] event time (ms)
-- ARGV[4]  window (ms)    ARGV[5] allowed lateness (ms)    ARGV[6] prefix of co-visit keys
-- ARGV[7]  how long applied event ids are remembered (ms)
--
-- Returns {status, n}: {"applied", pairs counted}, {"duplicate", 0}, {"late", watermark} or
-- {"lost", 0} when the marker is gone: counting on top of lost counts would be wrong, so nothing is.
--
-- Pairs are counted with the clicks already in the history on both sides, [t - window, t) as
-- "before" and (t, t + window] as "after", so the result does not depend on arrival order.
-- The watermark is the user's latest event time seen; history older than watermark - window -
-- lateness is trimmed, so a click older than watermark - lateness could miss partners: it is late.
-- Applied ids outlive the history, so a file replayed long after the first time is recognized as
-- duplicates, not mistaken for late clicks.
--
-- A history member carries its url after the event id (neither holds a space), so a partner's url
-- is read with the range itself: one command per partner (its ZINCRBY), not two.
local history, seen, marker = KEYS[1], KEYS[2], KEYS[3]
local id, url, t = ARGV[1], ARGV[2], tonumber(ARGV[3])
local window, lateness, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local remember = ARGV[7]

local function ms(x) return string.format('%.0f', x) end

if redis.call('EXISTS', marker) == 0 then
  return {'lost', 0}
end

if redis.call('SISMEMBER', seen, id) == 1 then
  return {'duplicate', 0}
end

local newest = redis.call('ZREVRANGE', history, 0, 0, 'WITHSCORES')
local watermark = t
if newest[2] and tonumber(newest[2]) > t then watermark = tonumber(newest[2]) end
if t < watermark - lateness then
  return {'late', ms(watermark)}
end

local function urlOf(member) return string.sub(member, string.find(member, ' ', 1, true) + 1) end

local counted = 0
local before = redis.call('ZRANGEBYSCORE', history, ms(t - window), '(' .. ms(t))
for _, other in ipairs(before) do
  redis.call('ZINCRBY', prefix .. urlOf(other), 1, url)
  counted = counted + 1
end
local after = redis.call('ZRANGEBYSCORE', history, '(' .. ms(t), ms(t + window))
for _, other in ipairs(after) do
  redis.call('ZINCRBY', prefix .. url, 1, urlOf(other))
  counted = counted + 1
end

redis.call('ZADD', history, ms(t), id .. ' ' .. url)
redis.call('SADD', seen, id)
redis.call('PEXPIRE', seen, remember)
redis.call('ZREMRANGEBYSCORE', history, '-inf', '(' .. ms(watermark - window - lateness))

return {'applied', counted}
