"""The Lua scripts ``RedisStore`` runs: one atomic step per session operation.

Every script is called with the three keys of one session (see ``stores.redis.core``), in
this order, so that it touches one hash slot only (Redis Cluster runs it on the node
that owns the session)::

    KEYS[1]  <prefix>:{<id>}:messages   LIST of "<created_at> <message JSON>", oldest first
    KEYS[2]  <prefix>:{<id>}:session    HASH created_at, updated_at, metadata
    KEYS[3]  <prefix>:{<id>}:lock       STRING run lease owner, with a PX expiry

The scripts that touch the usage ledger (``ADD_RUN``, ``CLEAR``, ``DROP_IDLE``,
``IMPORT``) take a fourth key of the same slot::

    KEYS[4]  <prefix>:{<id>}:runs       LIST of run record JSON texts, newest first

Timestamps are the server's clock (``TIME``), written as decimal text
(``"1717171717.250000"``), and every timestamp that comes from a client travels as
text too: no timestamp passes through a Lua number on its way into a key, so floats
round-trip exactly. ``ttl`` arguments are milliseconds as text, ``"0"`` for none.
Redis 7 replicates a script's effects, so reading ``TIME`` before writing is allowed.
"""

from __future__ import annotations

__all__ = (
    "ADD",
    "ADD_RUN",
    "ADD_UNLOCK",
    "CLEAR",
    "CUT_TAIL",
    "DROP_IDLE",
    "FORK_INTO",
    "IMPORT",
    "INFO",
    "LOCK",
    "LOCK_READ",
    "POP",
    "PUT_METADATA",
    "SNAPSHOT",
    "TRIM",
    "TRUNCATE",
    "UNLOCK",
)

# Helpers every writing script starts with.
_PRELUDE = """
local messages, session, lock = KEYS[1], KEYS[2], KEYS[3]

-- The server's time as "<seconds>.<microseconds>" text.
local function clock()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.rep('0', 6 - #t[2]) .. t[2]
end

-- Sliding expiry: a TTL (ms) is set on both keys. Without one, a message list created
-- now inherits what is left of the session hash's expiry, so both go together.
local function expire(ttl)
  if ttl ~= '0' then
    redis.call('PEXPIRE', messages, ttl)
    redis.call('PEXPIRE', session, ttl)
  else
    local left = redis.call('PTTL', session)
    if left > 0 then
      redis.call('PEXPIRE', messages, left)
    end
  end
end

-- Activity: updated_at is now (created_at too, for a new session); the TTL slides.
local function touch(now, ttl)
  redis.call('HSETNX', session, 'created_at', now)
  redis.call('HSET', session, 'updated_at', now)
  expire(ttl)
end

-- RPUSH ARGV[first..] in chunks (Lua's unpack has a limit), each prefixed by stamp.
local function push(first, stamp)
  for i = first, #ARGV, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, #ARGV) do
      chunk[#chunk + 1] = stamp .. ARGV[j]
    end
    redis.call('RPUSH', messages, unpack(chunk))
  end
end

-- A run's lease is given back if owner holds it.
local function unlock(owner)
  if redis.call('GET', lock) == owner then
    redis.call('DEL', lock)
  end
end

-- Append ARGV[first..] stamped with the server's time, as activity (see touch), and raise
-- the session's entry ARGV[2] in index_key (the sessions index: on one server only, nil
-- in a Cluster) -> the new updated_at.
local function append(first, index_key)
  local now = clock()
  push(first, now .. ' ')
  touch(now, ARGV[1])
  if index_key then
    redis.call('ZADD', index_key, 'GT', now, ARGV[2])
  end
  return now
end
"""


def _script(body: str) -> str:
    return _PRELUDE + body


#: ARGV: ttl, session id, message JSON texts... -> the new updated_at. With a fourth
#: key (the sessions index: another slot, so only on a single server, not a Cluster),
#: the session's index entry is raised to updated_at in the same step (``ZADD GT``).
ADD = _script("""
return append(3, KEYS[4])
""")

#: KEYS[4]: the session's runs; KEYS[5]: the sessions index, as for ``ADD``.
#: ARGV: ttl, session id, run record JSON, owner ('' for none), message JSON texts (none
#: or more)... Pushes the run record, adds the messages as ``ADD`` does, and gives the
#: owner's lease back (``ADD_UNLOCK``): one step. -> the new updated_at, or nil when no
#: message was added.
ADD_RUN = _script("""
local runs = KEYS[4]
redis.call('LPUSH', runs, ARGV[3])
if ARGV[1] ~= '0' then
  redis.call('PEXPIRE', runs, ARGV[1])
end
if ARGV[4] ~= '' then
  unlock(ARGV[4])
end
if #ARGV < 5 then
  return false
end
return append(5, KEYS[5])
""")

#: A run's last step: ADD, then UNLOCK. ARGV: ttl, session id, owner, message JSON
#: texts... (one or more) -> the new updated_at. KEYS[4] as for ADD.
ADD_UNLOCK = _script("""
local now = append(4, KEYS[4])
unlock(ARGV[3])
return now
""")

#: ARGV: ttl -> {updated_at, the removed item}, or nil for an empty session.
POP = _script("""
local item = redis.call('RPOP', messages)
if not item then
  return false
end
local now = clock()
touch(now, ARGV[1])
return {now, item}
""")

#: ARGV: ttl, whole ("1": the expected items are the entire list), expected items...
#: Removes the last #items items if they are exactly these (and, with whole, nothing
#: else is left before them) -> the new updated_at, or nil if the list changed.
CUT_TAIL = _script("""
local k = #ARGV - 2
local tail = redis.call('LRANGE', messages, -k, -1)
if #tail ~= k then
  return false
end
if ARGV[2] == '1' and redis.call('LLEN', messages) ~= k then
  return false
end
for i = 1, k do
  if tail[i] ~= ARGV[i + 2] then
    return false
  end
end
if ARGV[2] == '1' then
  redis.call('DEL', messages)
else
  redis.call('LTRIM', messages, 0, -(k + 1))
end
local now = clock()
touch(now, ARGV[1])
return now
""")

#: ARGV: ttl, keep -> {updated_at, removed items...}, or nil if nothing was removed.
TRUNCATE = _script("""
local keep = tonumber(ARGV[2])
local removed = redis.call('LRANGE', messages, keep, -1)
if #removed == 0 then
  return false
end
if keep == 0 then
  redis.call('DEL', messages)
else
  redis.call('LTRIM', messages, 0, keep - 1)
end
local now = clock()
touch(now, ARGV[1])
table.insert(removed, 1, now)
return removed
""")

#: KEYS[4]: the session's runs -> how many of the session's three keys existed.
CLEAR = _script("""
return redis.call('DEL', messages, session, KEYS[4])
""")

#: ARGV: owner, lease ms -> 1 if owner holds the lease now, 0 if another owner does.
LOCK = _script("""
local holder = redis.call('GET', lock)
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', lock, ARGV[1], 'PX', ARGV[2])
return 1
""")

#: A run's first step: LOCK, then (if taken) the session's items from index ARGV[3]
#: ("0": all; "-N": the newest N) to the end. ARGV: owner, lease ms, first -> {1, items}
#: if owner holds the lease now, {0} if another owner does.
LOCK_READ = _script("""
local holder = redis.call('GET', lock)
if holder and holder ~= ARGV[1] then
  return {0}
end
redis.call('SET', lock, ARGV[1], 'PX', ARGV[2])
return {1, redis.call('LRANGE', messages, ARGV[3], -1)}
""")

#: ARGV: owner -> 1 if the lease was owner's and is given back, else 0.
UNLOCK = _script("""
if redis.call('GET', lock) == ARGV[1] then
  return redis.call('DEL', lock)
end
return 0
""")

#: -> {created_at, updated_at, metadata or nil, message count, leased 0/1}, or nil
#: when the session has no record.
INFO = _script("""
local h = redis.call('HMGET', session, 'created_at', 'updated_at', 'metadata')
if not h[2] then
  return false
end
return {h[1], h[2], h[3], redis.call('LLEN', messages), redis.call('EXISTS', lock)}
""")

#: ARGV: at (-1: all) -> {created_at, updated_at, metadata, count, items 1..at...}, or
#: nil when the session has neither a record nor messages.
SNAPSHOT = _script("""
local h = redis.call('HMGET', session, 'created_at', 'updated_at', 'metadata')
local count = redis.call('LLEN', messages)
if not h[2] and count == 0 then
  return false
end
local at = tonumber(ARGV[1])
local items = {}
if at < 0 then
  items = redis.call('LRANGE', messages, 0, -1)
elseif at > 0 then
  items = redis.call('LRANGE', messages, 0, at - 1)
end
table.insert(items, 1, count)
table.insert(items, 1, h[3] or '')
table.insert(items, 1, h[2] or '')
table.insert(items, 1, h[1] or '')
return items
""")

#: ARGV: ttl, metadata ('' for none), stored items... -> {1, updated_at} once copied,
#: or {0, count} if the target already holds messages (nothing is changed then).
FORK_INTO = _script("""
local have = redis.call('LLEN', messages)
if have > 0 then
  return {0, have}
end
push(3, '')
if ARGV[2] == '' then
  redis.call('HDEL', session, 'metadata')
else
  redis.call('HSET', session, 'metadata', ARGV[2])
end
local now = clock()
touch(now, ARGV[1])
return {1, now}
""")

#: KEYS[4]: the session's runs. ARGV: ttl, on_conflict, created_at, updated_at,
#: metadata, n, n run record JSON texts (oldest first), stored items...
#: -> 'ok', 'skip' or 'conflict' (nothing changed for the last two). The records
#: replace the session's ledger.
IMPORT = _script("""
if redis.call('EXISTS', messages, session) > 0 then
  if ARGV[2] == 'skip' then
    return 'skip'
  end
  if ARGV[2] ~= 'replace' then
    return 'conflict'
  end
  redis.call('DEL', messages, session)
end
local n = tonumber(ARGV[6])
push(7 + n, '')
redis.call('HSET', session, 'created_at', ARGV[3], 'updated_at', ARGV[4], 'metadata', ARGV[5])
expire(ARGV[1])
redis.call('DEL', KEYS[4])
for i = 7, 6 + n do
  redis.call('LPUSH', KEYS[4], ARGV[i])
end
if n > 0 and ARGV[1] ~= '0' then
  redis.call('PEXPIRE', KEYS[4], ARGV[1])
end
return 'ok'
""")

#: ARGV: ttl, new metadata, mode, expected. Mode '*' writes unconditionally, '-' only
#: if the session has no metadata, '=' only if its metadata is exactly ``expected``.
#: Creates the record if need be; updated_at is not changed (metadata is not activity).
#: -> updated_at, or nil if the condition failed.
PUT_METADATA = _script("""
local current = redis.call('HGET', session, 'metadata')
if (ARGV[3] == '-' and current) or (ARGV[3] == '=' and current ~= ARGV[4]) then
  return false
end
local now = clock()
redis.call('HSETNX', session, 'created_at', now)
redis.call('HSETNX', session, 'updated_at', now)
redis.call('HSET', session, 'metadata', ARGV[2])
expire(ARGV[1])
return redis.call('HGET', session, 'updated_at')
""")

#: KEYS[4]: the session's runs. ARGV: cutoff, budget. Deletes an idle session
#: (updated_at before cutoff, no lease) whole, its runs too, if it has at most budget
#: messages, else its newest budget messages.
#: -> {messages deleted, 1 if the session is gone}, or {-1, 0} leased, {-2, 0} active
#: again since it was listed, {-3, 0} no such session (a stale index entry).
DROP_IDLE = _script("""
if redis.call('EXISTS', lock) == 1 then
  return {-1, 0}
end
local updated = redis.call('HGET', session, 'updated_at')
local count = redis.call('LLEN', messages)
if not updated and count == 0 then
  return {-3, 0}
end
if updated and tonumber(updated) >= tonumber(ARGV[1]) then
  return {-2, 0}
end
local budget = tonumber(ARGV[2])
if count <= budget then
  redis.call('DEL', messages, session, KEYS[4])
  return {count, 1}
end
redis.call('LTRIM', messages, 0, -(budget + 1))
return {budget, 0}
""")

#: ARGV: keep, budget. Deletes up to budget of the oldest messages beyond the newest
#: keep, unless the session is leased -> how many were deleted (-1: leased).
#: updated_at and the expiry stay as they were: trimming is not activity.
TRIM = _script("""
if redis.call('EXISTS', lock) == 1 then
  return -1
end
local excess = redis.call('LLEN', messages) - tonumber(ARGV[1])
if excess <= 0 then
  return 0
end
local cut = math.min(excess, tonumber(ARGV[2]))
redis.call('LTRIM', messages, cut, -1)
return cut
""")
