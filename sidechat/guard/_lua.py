"""The Lua scripts that keep per-client limits in Redis: one round trip to admit a turn, one to
release it, one to renew the leases of the turns a process is generating."""

from __future__ import annotations

__all__ = ["ADMIT", "RELEASE", "RENEW"]

# Times are Redis's own (TIME), so replicas whose clocks differ still agree. Milliseconds,
# kept as decimals (a rate of 100/second is a 10 ms interval; 1,000,000/second 0.001 ms).
_NOW = """
local t = redis.call('TIME')
local secs = tonumber(t[1])
local now = secs * 1000 + tonumber(t[2]) / 1000
local day = math.floor(secs / 86400)
local midnight = ((day + 1) * 86400 - secs) * 1000
"""

# KEYS: client bucket, conversation bucket, the client's active set, the site's spent tokens
# prefix (day appended), the client's (day and client appended).
# ARGV: client interval ms, client tolerance ms (0 0: off), the same for the conversation
# (0 0: off or none), concurrency cap (0: off), lease ms, ticket id, daily client tokens,
# daily site tokens, client key.
# Returns {code, wait ms as a string}: code 'ok', 'too_many_active', 'daily_site',
# 'daily_client' or 'rate_limited'. A refusal takes nothing.
ADMIT = (
    _NOW
    + """
local cap, lease = tonumber(ARGV[5]), tonumber(ARGV[6])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= cap then return {'too_many_active', '2000'} end
end
local site, per_client = tonumber(ARGV[9]), tonumber(ARGV[8])
if site > 0 and tonumber(redis.call('GET', KEYS[4] .. day) or '0') >= site then
  return {'daily_site', tostring(midnight)}
end
if per_client > 0 then
  local spent = redis.call('GET', KEYS[5] .. day .. ':' .. ARGV[10])
  if tonumber(spent or '0') >= per_client then return {'daily_client', tostring(midnight)} end
end
local wait = 0
local tats = {}
for b = 0, 1 do
  local interval, tolerance = tonumber(ARGV[2 * b + 1]), tonumber(ARGV[2 * b + 2])
  if interval > 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[b + 1]) or '0'), now)
    tats[b + 1] = tat + interval
    wait = math.max(wait, tat - tolerance - now)
  end
end
if wait > 0 then return {'rate_limited', string.format('%.3f', wait)} end
for b = 1, 2 do
  if tats[b] then
    redis.call('SET', KEYS[b], string.format('%.4f', tats[b]), 'PX', math.ceil(tats[b] - now) + 1)
  end
end
if cap > 0 then
  redis.call('ZADD', KEYS[3], string.format('%.3f', now + lease), ARGV[7])
  redis.call('PEXPIRE', KEYS[3], math.ceil(lease))
end
return {'ok', '0'}
"""
)

# KEYS: the client's active set, the site's spent prefix, the client's spent prefix.
# ARGV: ticket id, output tokens, client key. Ends the ticket's lease and charges its tokens
# to today's budgets (kept until a day after their day ends).
RELEASE = (
    _NOW
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  local keep = math.ceil(midnight / 1000) + 86400
  local site, client = KEYS[2] .. day, KEYS[3] .. day .. ':' .. ARGV[3]
  redis.call('INCRBY', site, tokens)
  redis.call('EXPIRE', site, keep)
  redis.call('INCRBY', client, tokens)
  redis.call('EXPIRE', client, keep)
end
return 1
"""
)

# KEYS: active sets, one per ticket. ARGV: lease ms, then the tickets' ids. Moves each held
# ticket's lease on (XX: a ticket that lapsed meanwhile is not brought back).
RENEW = (
    _NOW
    + """
local lease = tonumber(ARGV[1])
local until_ = string.format('%.3f', now + lease)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', until_, ARGV[i + 1])
  redis.call('PEXPIRE', key, math.ceil(lease))
end
return #KEYS
"""
)
