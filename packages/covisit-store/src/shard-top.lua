-- One shard's co-visits of a url in a range of ranks by score desc, for a read that merges the shards (see
-- CovisitStore.coVisitsAfter). Reads only. Version 1.
-- KEYS[1] the url's co-visit counts in the shard, KEYS[2] the shard's gate (its marker for covisit, its served key for a reader),
-- KEYS[3] the shard's copy of the pages' visibility (see visibility.lua); ARGV[1] the first rank read (0 the highest count), ARGV[2]
-- the last
-- Returns whether any page is hidden (1 or 0), then member1, score1, ...; nil when the gate is gone.
if redis.call('EXISTS', KEYS[2]) == 0 then return nil end
local out = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
table.insert(out, 1, #redis.call('ZRANGEBYSCORE', KEYS[3], '(0', '+inf', 'LIMIT', 0, 1))
return out
