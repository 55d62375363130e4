-- The urls of users' histories from a time on: the co-visit counts a batch of their clicks may add to, which covisit.lua must be
-- given as KEYS. Reads only. Version 1.
-- KEYS: the users' histories (see covisit.lua), all of one shard; ARGV: for each, the earliest time (ms) read
-- Returns the distinct urls.
local seen, out = {}, {}
for i = 1, #KEYS do
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[i], '+inf')) do
    local url = string.sub(member, string.find(member, ' ', 1, true) + 1)
    if not seen[url] then
      seen[url] = true
      out[#out + 1] = url
    end
  end
end
return out
