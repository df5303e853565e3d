"""The Lua scripts behind :class:`RedisStore`: every change to the indexes is one atomic call.

Keys under the store's prefix ``P`` (``rec`` names one request: ``<len(model)>:<model>:<id>``,
so no model name or request id can make two records share a key):

- ``P:p:<rec>``: hash of one prediction (``v`` version, ``t`` ts, ``c`` classes JSON,
  ``r`` rows), with an EXPIRE past its retention as a safety net;
- ``P:pz``: sorted set of recs by prediction time (eviction, row cap, retention);
- ``P:ps``: hash rec → ``"<bytes> <rows>"`` of each prediction, kept apart from the
  expiring hash so the byte counter stays exact when a prediction key expired first;
- ``P:fz``: sorted set of recs by feedback time (eviction, retention);
- ``P:fm``: hash rec → ``"<bytes> <rows> <correct> <version>"`` of each label;
- ``P:fv:<len(model)>:<model>:<version>``: sorted set of request ids by ``P:seq``, the
  order labels arrived in (the accuracy window);
- ``P:bytes``: logical bytes held; ``P:seq``: feedback sequence.

Every script is declared with a shebang, so Redis refuses a writing script up front
(out of memory, read-only replica) instead of stopping it half way. Pruning and eviction
only delete, so they may run when Redis is out of memory (``allow-oom``). Record keys are
built inside the scripts: the store needs one Redis server (or a primary), not a Cluster.
"""

from __future__ import annotations

_COMMON = """
local P = ARGV[1]
local BYTES, SEQ = P .. ':bytes', P .. ':seq'
local PZ, PS, FZ, FM = P .. ':pz', P .. ':ps', P .. ':fz', P .. ':fm'

local function rec_of(model, id)
  return #model .. ':' .. model .. ':' .. id
end

local function parts(rec)
  local n, rest = string.match(rec, '^(%d+):(.*)$')
  n = tonumber(n)
  return string.sub(rest, 1, n), string.sub(rest, n + 2)
end

local function labelled_key(model, version)
  return P .. ':fv:' .. #model .. ':' .. model .. ':' .. version
end
"""

_DROP = """
local function drop_prediction(rec)
  local meta = redis.call('HGET', PS, rec)
  redis.call('ZREM', PZ, rec)
  redis.call('DEL', P .. ':p:' .. rec)
  local model = parts(rec)
  if not meta then return model, 0 end
  redis.call('HDEL', PS, rec)
  local size, rows = string.match(meta, '^(%d+) (%d+)$')
  redis.call('DECRBY', BYTES, size)
  return model, tonumber(rows)
end

local function drop_feedback(rec)
  local meta = redis.call('HGET', FM, rec)
  redis.call('ZREM', FZ, rec)
  local model, id = parts(rec)
  if not meta then return model, 0 end
  redis.call('HDEL', FM, rec)
  local size, rows, _, version = string.match(meta, '^(%d+) (%d+) (%d+) (.*)$')
  redis.call('ZREM', labelled_key(model, version), id)
  redis.call('DECRBY', BYTES, size)
  return model, tonumber(rows)
end

local function oldest(zset)
  local got = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if got[1] then return got[1], tonumber(got[2]) end
  return nil, nil
end

-- Drop the oldest records (predictions or labels, older first) until the bytes fit the
-- budget, at most `limit` of them so one call cannot block Redis for long. Returns
-- {1 if more must go else 0, model, rows, model, rows, ...}.
local function fit(budget, limit)
  local evicted, more = {}, 1
  for _ = 1, limit do
    if tonumber(redis.call('GET', BYTES) or '0') <= budget then more = 0 break end
    local p, pt = oldest(PZ)
    local f, ft = oldest(FZ)
    if not p and not f then redis.call('DEL', BYTES) more = 0 break end
    local model, rows
    if f and (not p or ft < pt) then
      model, rows = drop_feedback(f)
    else
      model, rows = drop_prediction(p)
    end
    evicted[model] = (evicted[model] or 0) + rows
  end
  local out = {more}
  for model, rows in pairs(evicted) do
    out[#out + 1] = model
    out[#out + 1] = rows
  end
  return out
end
"""

# ARGV: prefix, budget, evict limit, now, retention_s, expire slack, then
# (model, id, version, ts, classes, rows) per prediction.
ADD_PREDICTIONS = (
    "#!lua\n"
    + _COMMON
    + _DROP
    + """
local now, keep, slack = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 7, #ARGV, 6 do
  local model, id, version = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ts, classes, rows = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local rec = rec_of(model, id)
  local key = P .. ':p:' .. rec
  local old = redis.call('HGET', PS, rec)
  if old then redis.call('DECRBY', BYTES, string.match(old, '^%d+')) end
  local size = #key + 2 * #rec + #version + #ts + #classes + #rows + 64
  redis.call('HSET', key, 'v', version, 't', ts, 'c', classes, 'r', rows)
  redis.call('EXPIRE', key, math.max(1, math.ceil(tonumber(ts) + keep - now)) + slack)
  redis.call('ZADD', PZ, ts, rec)
  redis.call('HSET', PS, rec, size .. ' ' .. rows)
  redis.call('INCRBY', BYTES, size)
end
return fit(tonumber(ARGV[2]), tonumber(ARGV[3]))
"""
)

# ARGV: prefix, budget, evict limit, model, ts, then (id, version, rows, correct) per label.
# A label given again replaces the earlier one (and moves to the newest end of the window).
ADD_FEEDBACK = (
    "#!lua\n"
    + _COMMON
    + _DROP
    + """
local model, ts = ARGV[4], ARGV[5]
for i = 6, #ARGV, 4 do
  local id, version, rows, correct = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local rec = rec_of(model, id)
  drop_feedback(rec)
  local size = 3 * #rec + #id + #version + #ts + #rows + #correct + 64
  redis.call('ZADD', labelled_key(model, version), redis.call('INCR', SEQ), id)
  redis.call('HSET', FM, rec, size .. ' ' .. rows .. ' ' .. correct .. ' ' .. version)
  redis.call('ZADD', FZ, ts, rec)
  redis.call('INCRBY', BYTES, size)
end
return fit(tonumber(ARGV[2]), tonumber(ARGV[3]))
"""
)

# ARGV: prefix, budget, evict limit.
EVICT = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + _DROP
    + "return fit(tonumber(ARGV[2]), tonumber(ARGV[3]))\n"
)

# ARGV: prefix, "p" or "f", cutoff ts, row cap (-1: none), batch. Returns records dropped.
PRUNE = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + _DROP
    + """
local zset, drop = FZ, drop_feedback
if ARGV[2] == 'p' then zset, drop = PZ, drop_prediction end
local cap, batch = tonumber(ARGV[4]), tonumber(ARGV[5])
local gone = 0
local old = redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. ARGV[3], 'LIMIT', 0, batch)
for _, rec in ipairs(old) do
  drop(rec)
  gone = gone + 1
end
local excess = cap >= 0 and redis.call('ZCARD', zset) - cap or 0
if excess > 0 and gone < batch then
  for _, rec in ipairs(redis.call('ZRANGE', zset, 0, math.min(excess, batch - gone) - 1)) do
    drop(rec)
    gone = gone + 1
  end
end
return gone
"""
)

# ARGV: prefix, model, version, window. Returns {requests, rows, correct}.
ACCURACY = (
    "#!lua flags=no-writes\n"
    + _COMMON
    + """
local model, version, window = ARGV[2], ARGV[3], tonumber(ARGV[4])
local requests, rows, correct = 0, 0, 0
if window < 1 then return {0, 0, 0} end
for _, id in ipairs(redis.call('ZREVRANGE', labelled_key(model, version), 0, window - 1)) do
  local meta = redis.call('HGET', FM, rec_of(model, id))
  if meta then
    local _, r, c = string.match(meta, '^(%d+) (%d+) (%d+) ')
    requests, rows, correct = requests + 1, rows + tonumber(r), correct + tonumber(c)
  end
end
return {requests, rows, correct}
"""
)
