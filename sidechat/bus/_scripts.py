"""The Lua scripts that make a turn's writes atomic and fenced by its epoch."""

from __future__ import annotations

__all__ = ["APPEND", "RELEASE", "RENEW", "TAKEOVER"]

# KEYS: stream, epoch, lease. ARGV: epoch, maxlen, stream ttl ms, lease ms, owner, then
# (event id, payload) pairs. A new turn claims epoch 1 with its first batch (so beginning a
# turn costs no round trip); any other epoch than the current one is refused (-1): a zombie
# producer's late writes. Ids already in the stream are skipped, so a batch retried after an
# uncertain failure is written once. Returns the last id in the stream.
APPEND = """
local cur = redis.call('GET', KEYS[2])
local ttl = tonumber(ARGV[3])
if not cur then
  if ARGV[1] ~= '1' or redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
  redis.call('SET', KEYS[2], '1', 'PX', ttl)
  redis.call('SET', KEYS[3], ARGV[5] .. ':1', 'PX', ARGV[4])
elseif cur ~= ARGV[1] then
  return -1
end
local last = 0
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if top[1] then last = tonumber(string.match(top[1][1], '%-(%d+)$')) end
local done = false
for i = 6, #ARGV, 2 do
  local n = tonumber(ARGV[i])
  if n > last then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. n, 'p', ARGV[i + 1])
    last = n
    if ARGV[i + 1] == '[DONE]' then done = true end
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if done then redis.call('DEL', KEYS[3]) end
return last
"""

# KEYS: lease, epoch. ARGV: owner, epoch, lease ms. Renews (or re-takes, when it lapsed and
# nobody took over) the lease while the epoch is still this producer's; 0 when it is not.
RENEW = """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: lease, epoch, stream. ARGV: owner, lease ms. Takes over a turn whose lease lapsed and
# whose stream has not ended: a higher epoch, returned (0: the lease is alive, or no such turn).
TAKEOVER = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if top[1] and top[1][2][2] == '[DONE]' then return 0 end
local e = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. e, 'PX', ARGV[2])
return e
"""

# KEYS: lease. ARGV: owner:epoch. Gives the lease up if it is still this producer's.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
