-- Applies a page's visibility (a PageVisibility of the VISIBILITY stream), atomically. Version 1.
-- KEYS: [1] the visibility of pages: a sorted set url -> the VISIBILITY sequence of its latest state applied, positive when that
--   state hides the url, negated when it shows it (the hidden urls are the members with a positive score)
-- ARGV: [1] url, [2] "1" to hide, "0" to show, [3] the VISIBILITY sequence of the state
-- Returns "applied", or "stale" (a state of this sequence or a later one was applied: nothing changed).
local visibility, url, hidden, seq = KEYS[1], ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local current = redis.call('ZMSCORE', visibility, url)[1]
if current and math.abs(tonumber(current)) >= seq then
  return 'stale'
end
redis.call('ZADD', visibility, string.format('%.0f', hidden and seq or -seq), url)
return 'applied'
