-- Forgets a user at their erasure (a UserDeleted on CLICKS), atomically. Version 2.
-- KEYS, all of the user's shard: [1] the marker (see covisit.lua); the user's [2] history, [3] applied ids, [4] recent urls,
--   [5] erasure tombstone (a sorted set: member "seq" -> the CLICKS sequence of the latest erasure applied)
-- ARGV: [1] the CLICKS sequence of the UserDeleted, [2] how long the tombstone is kept (ms)
-- Returns "lost" (nothing changed: Redis lost the counts), "duplicate" (an erasure at this sequence or later was applied: nothing
--   changed, so the clicks of the same userid after it stay), or "erased".
-- The co-visit counts stay: they carry no userid. covisit.lua skips every click of a message at or before the tombstone.
local marker, history, ids, recent, tombstone = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local seq, keep = tonumber(ARGV[1]), tonumber(ARGV[2])

if redis.call('EXISTS', marker) == 0 then
  return 'lost'
end
local through = redis.call('ZMSCORE', tombstone, 'seq')[1]
if through and tonumber(through) >= seq then
  return 'duplicate'
end
redis.call('UNLINK', history, ids, recent)
redis.call('ZADD', tombstone, string.format('%.0f', seq), 'seq')
redis.call('PEXPIRE', tombstone, keep)
return 'erased'
