"""The Lua scripts that make a turn's writes atomic and fenced by its epoch."""

from __future__ import annotations

__all__ = ["APPEND", "RELEASE", "RENEW", "TAKEOVER"]

# One call per window for every turn with new events. KEYS: (stream, epoch, lease) per turn.
# ARGV: maxlen, stream ttl ms, lease ms, owner, then per turn (epoch, the first event's id, the
# events' payloads joined by newlines: compact JSON has no raw newline, and one argument
# instead of two per event halves the client's CPU per token). A new turn claims epoch 1 with
# its first batch (so beginning a turn costs no round trip); any other epoch than the current
# one is refused (-1): a zombie producer's late writes. Ids already in the stream are skipped,
# so a batch retried after an uncertain failure is written once. Returns, per turn, the last
# id in its stream, -1 (fenced), or -2 - last when the events before the batch are missing.
APPEND = """
local maxlen, ttl, lease_ms, owner = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out = {}
for t = 0, #KEYS / 3 - 1 do
  local stream, epoch, lease = KEYS[3 * t + 1], KEYS[3 * t + 2], KEYS[3 * t + 3]
  local want, first, joined = ARGV[3 * t + 5], tonumber(ARGV[3 * t + 6]), ARGV[3 * t + 7]
  local cur = redis.call('GET', epoch)
  local ok = true
  if not cur then
    if want ~= '1' or redis.call('EXISTS', stream) == 1 then
      ok = false
    else
      redis.call('SET', epoch, '1', 'PX', ttl)
      redis.call('SET', lease, owner .. ':1', 'PX', lease_ms)
    end
  elseif cur ~= want then
    ok = false
  end
  if not ok then
    out[t + 1] = -1
  else
    local last = 0
    local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    if top[1] then last = tonumber(string.match(top[1][1], '%-(%d+)$')) end
    if first - 1 > last then
      -- Events before this batch are missing (Redis lost the stream, e.g. restarted without
      -- persistence): ask for them again, from the last one it has.
      out[t + 1] = -2 - last
    else
      local n = first - 1
      local done = false
      for payload in string.gmatch(joined, '[^\\n]+') do
        n = n + 1
        if n > last then
          redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '0-' .. n, 'p', payload)
          last = n
          if payload == '[DONE]' then done = true end
        end
      end
      redis.call('PEXPIRE', stream, ttl)
      redis.call('PEXPIRE', epoch, ttl)
      if done then redis.call('DEL', lease) end
      out[t + 1] = last
    end
  end
end
return out
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
