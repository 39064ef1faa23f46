"""The Lua scripts of compaction on ``RedisStore`` (see ``compaction`` for the layout).

Each takes the session's three keys, as every script does (see ``scripts``), and starts
with the same prelude.
"""

from __future__ import annotations

from .scripts import _script

__all__ = ("ARCHIVE", "COMPACT", "RECORDS", "RESTORE", "UNCOMPACT")

#: ARGV: cut, summary message JSON, record -> 1, or nil if the list holds no more than
#: cut items (nothing is changed then).
COMPACT = _script("""
local cut = tonumber(ARGV[1])
if redis.call('LLEN', messages) <= cut then
  return false
end
local moved = redis.call('LRANGE', messages, 0, cut - 1)
local n = tonumber(redis.call('HGET', session, 'compactions') or '0') + 1
local summary = clock() .. ' ' .. ARGV[2]
redis.call('HSET', session, 'compactions', n,
  'compaction:' .. n, cjson.encode({ARGV[3], summary, moved}))
redis.call('LTRIM', messages, cut, -1)
redis.call('LPUSH', messages, summary)
return 1
""")

#: ARGV: ttl -> {record, summary item} of the compaction undone, or nil if none.
UNCOMPACT = _script("""
local n = tonumber(redis.call('HGET', session, 'compactions') or '0')
if n == 0 then
  return false
end
local field = 'compaction:' .. n
local entry = cjson.decode(redis.call('HGET', session, field))
local record, summary, moved = entry[1], entry[2], entry[3]
if redis.call('LINDEX', messages, 0) == summary then
  redis.call('LPOP', messages)
end
for i = #moved, 1, -1 do
  redis.call('LPUSH', messages, moved[i])
end
redis.call('HDEL', session, field)
if n == 1 then
  redis.call('HDEL', session, 'compactions')
else
  redis.call('HSET', session, 'compactions', n - 1)
end
expire(ARGV[1])
return {record, summary}
""")

#: -> {the message list, {compaction:1, compaction:2, ...}}: one consistent read.
ARCHIVE = _script("""
local n = tonumber(redis.call('HGET', session, 'compactions') or '0')
local entries = {}
for i = 1, n do
  entries[i] = redis.call('HGET', session, 'compaction:' .. i)
end
return {redis.call('LRANGE', messages, 0, -1), entries}
""")

#: ARGV: compaction entries (JSON, oldest first) -> how many. Run right after an import
#: wrote the session (which left it with no compaction).
RESTORE = _script("""
for i = 1, #ARGV do
  redis.call('HSET', session, 'compaction:' .. i, ARGV[i])
end
redis.call('HSET', session, 'compactions', #ARGV)
return #ARGV
""")

#: -> {record, summary item} of each compaction, oldest first (no archived items).
RECORDS = _script("""
local n = tonumber(redis.call('HGET', session, 'compactions') or '0')
local found = {}
for i = 1, n do
  local entry = cjson.decode(redis.call('HGET', session, 'compaction:' .. i))
  found[i] = {entry[1], entry[2]}
end
return found
""")
