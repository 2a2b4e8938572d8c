"""The Lua scripts of the Redis view cache: each rule checked and applied atomically.

Layout, per service namespace ``ns`` and projection ``p`` (``{ns:p}`` is a hash tag, so a
projection's keys share one cluster slot):

- ``{ns:p}:meta``: a hash: ``epoch``, ``gen``, ``through``, and ``t:<collection>`` (the
  collection's last touch, for list answers). It has no TTL.
- ``{ns:p}:<epoch>:d:<collection>:<key>``: a document's entry;
  ``{ns:p}:<epoch>:l:<collection>:<query>``: a list answer's.

An entry is ``<kind><position>:<body>``: kind ``v`` (a value), ``n`` (no such document),
``t`` (a tombstone: changed at that position, content unknown). Positions travel as
decimal strings and are compared as Lua numbers (exact below 2^53).
Scripts only touch the keys they are given (KEYS), as Redis asks.
"""

from __future__ import annotations

__all__ = ["INVALIDATE", "LOOKUP", "RESET", "STORE"]

# KEYS: meta, slot (built with the caller's epoch guess)
# ARGV: epoch guess, epoch for a new meta, touch field ('' unless a list answer)
# -> {epoch, gen, through, touched, entry or nil}; no entry when the guess was wrong
LOOKUP = """
local m = redis.call('HMGET', KEYS[1], 'epoch', 'gen', 'through')
if not m[1] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'gen', '0', 'through', '0')
  return {ARGV[2], '0', '0', '0', false}
end
local touched = '0'
if ARGV[3] ~= '' then touched = redis.call('HGET', KEYS[1], ARGV[3]) or '0' end
if m[1] ~= ARGV[1] then return {m[1], m[2], m[3], touched, false} end
return {m[1], m[2], m[3], touched, redis.call('GET', KEYS[2])}
"""

# The position of an entry's head ('v123:...'), or -1 when there is none.
_HELD = """
local function held(key)
  local head = redis.call('GETRANGE', key, 0, 24)
  if head == '' then return -1 end
  return tonumber(string.sub(head, 2, string.find(head, ':', 2, true) - 1))
end
"""

# KEYS: meta, slot
# ARGV: epoch (the lookup's), generation (loaded from), position, entry, ttl ms, touch field
# -> 'stored' | 'older' | 'moved'
STORE = (
    _HELD
    + """
local m = redis.call('HMGET', KEYS[1], 'epoch', 'gen', 'through')
if m[1] ~= ARGV[1] then return 'moved' end
if m[2] == '0' then
  redis.call('HSET', KEYS[1], 'gen', ARGV[2])
elseif m[2] ~= ARGV[2] then
  return 'moved'
end
local p = tonumber(ARGV[3])
local h = held(KEYS[2])
if h > p then return 'older' end
if ARGV[6] ~= '' then
  if tonumber(redis.call('HGET', KEYS[1], ARGV[6]) or '0') > p then return 'older' end
elseif h < 0 and p < tonumber(m[3]) then
  return 'older'
end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
return 'stored'
"""
)

_RESET = """
local function reset(gen, through)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'gen', gen, 'through', through)
  local heard = redis.call('PUBLISH', ARGV[4],
    cjson.encode({'reset', ARGV[5], ARGV[3], gen, through}))
  return {'reset', ARGV[3], heard}
end
"""

# KEYS: meta, then the slots of the touched documents (built with the caller's epoch guess)
# ARGV: 1 generation, 2 checkpoint, 3 epoch if one must start, 4 channel, 5 projection,
#       6 epoch guess, 7 after, 8 tombstone ttl ms, 9 documents (JSON, for the notice),
#       10 number of collections touched, 11... the collections
# -> {'ok' | 'reset' | 'ignored' | 'epoch', epoch}; 'epoch': the guess was wrong, call again
INVALIDATE = (
    _HELD
    + _RESET
    + """
local m = redis.call('HMGET', KEYS[1], 'epoch', 'gen', 'through')
if not m[1] then return reset(ARGV[1], ARGV[2]) end
local gen = tonumber(m[2])
local g = tonumber(ARGV[1])
if g < gen then return {'ignored', m[1]} end
local cp = tonumber(ARGV[2])
if (g > gen and gen ~= 0) or tonumber(m[3]) < tonumber(ARGV[7]) then
  return reset(ARGV[1], ARGV[2])
end
if m[1] ~= ARGV[6] then return {'epoch', m[1]} end
if gen == 0 then redis.call('HSET', KEYS[1], 'gen', ARGV[1]) end
local tomb = 't' .. ARGV[2] .. ':'
for i = 2, #KEYS do
  if held(KEYS[i]) < cp then redis.call('SET', KEYS[i], tomb, 'PX', ARGV[8]) end
end
for i = 11, 10 + tonumber(ARGV[10]) do
  local field = 't:' .. ARGV[i]
  if tonumber(redis.call('HGET', KEYS[1], field) or '0') < cp then
    redis.call('HSET', KEYS[1], field, ARGV[2])
  end
end
if tonumber(m[3]) < cp then redis.call('HSET', KEYS[1], 'through', ARGV[2]) end
redis.call('PUBLISH', ARGV[4],
  cjson.encode({'inv', ARGV[5], m[1], ARGV[7], ARGV[2]}) .. '\\n' .. ARGV[9])
return {'ok', m[1]}
"""
)

# KEYS: meta
# ARGV: 1 generation, 2 checkpoint, 3 new epoch, 4 channel, 5 projection, 6 force ('1')
# -> {'reset', epoch, processes that heard the notice} | {'ignored', epoch}
RESET = (
    _RESET
    + """
local gen = redis.call('HGET', KEYS[1], 'gen')
if ARGV[6] ~= '1' and gen and tonumber(ARGV[1]) < tonumber(gen) then
  return {'ignored', redis.call('HGET', KEYS[1], 'epoch')}
end
return reset(ARGV[1], ARGV[2])
"""
)
