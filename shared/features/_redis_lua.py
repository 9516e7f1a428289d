"""The Lua scripts ``RedisStore`` runs inside Redis (kept apart: they are a language of their own)."""

__all__ = ["COMMON", "READ", "WRITE"]

# A cumulative entry is "<count %012d>|<inexact_1..n>|<sum_1..n>|<event member>": the running
# count, per value column the running number of values a double cannot sum exactly and the running
# sum of the others, then the event's own member "<id>|<v1>|...|<vn>". The zero-padded count makes
# entries of equal time sort (by member) in insertion order, so the last entry at or before a time
# is the one that includes every event of that time.
COMMON = """
local EXACT = 9007199254740992
local function values(member, n)
  local out, s = {}, string.find(member, '|', 1, true)
  for i = 1, n do
    local e = string.find(member, '|', s + 1, true)
    out[i] = tonumber(string.sub(member, s + 1, e and e - 1 or -1))
    s = e
  end
  return out
end
local function own(member, n)
  local v, c = values(member, n), {1}
  for i = 1, n do
    local x = v[i]
    if x ~= nil and x == x and x > -EXACT and x < EXACT and math.floor(x) == x then
      c[1 + i], c[1 + n + i] = 0, x
    else
      c[1 + i], c[1 + n + i] = 1, 0
    end
  end
  return c
end
local function parse(entry, n)
  local f, s = {}, 0
  for i = 1, 1 + 2 * n do
    local e = string.find(entry, '|', s + 1, true)
    f[i] = tonumber(string.sub(entry, s + 1, e - 1))
    s = e
  end
  return f, string.sub(entry, s + 1)
end
-- The running totals just before a cumulative entry: its own minus those of its event.
local function before_entry(entry, n)
  local f, member = parse(entry, n)
  local c = own(member, n)
  for i = 1, 1 + 2 * n do f[i] = f[i] - c[i] end
  return f
end
"""

WRITE = """
local n = tonumber(ARGV[1])
local function format(f, member)
  local parts = {string.format('%012d', f[1])}
  for i = 2, 1 + 2 * n do parts[i] = string.format('%.17g', f[i]) end
  parts[#parts + 1] = member
  return table.concat(parts, '|')
end
-- First every key's events go in (a member written again at another time moves: ZADD semantics),
-- noting per key the earliest time whose running totals changed.
local from = {}
for a = 2, #ARGV, 3 do
  local k, ts, member = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  local old = redis.call('ZSCORE', KEYS[k], member)
  if not (old and tonumber(old) == ts) then
    redis.call('ZADD', KEYS[k], ts, member)
    local t = ts
    if old and tonumber(old) < t then t = tonumber(old) end
    if from[k] == nil or t < from[k] then from[k] = t end
  end
end
-- Then each key's running totals are rewritten once, from that time on, from its events. Events
-- mostly arrive in time order, so that is only the new ones; a late event rewrites the entries
-- after it once per write, not once per late event (which made a shuffled batch quadratic).
-- Eviction removes the same times from both sets, so with no entry left before that time every
-- event is rewritten, and the totals may start from zero.
for k, t in pairs(from) do
  local events, cum = KEYS[k], KEYS[k + 1]
  local totals = {0}
  for i = 2, 1 + 2 * n do totals[i] = 0 end
  local prev = redis.call('ZREVRANGEBYSCORE', cum, '(' .. t, '-inf', 'LIMIT', 0, 1)
  if #prev > 0 then totals = parse(prev[1], n) end
  redis.call('ZREMRANGEBYSCORE', cum, t, '+inf')
  local later = redis.call('ZRANGEBYSCORE', events, t, '+inf', 'WITHSCORES')
  for j = 1, #later, 2 do
    local c = own(later[j], n)
    for i = 1, 1 + 2 * n do totals[i] = totals[i] + c[i] end
    redis.call('ZADD', cum, later[j + 1], format(totals, later[j]))
  end
end
return 0
"""

# ARGV[1] holds "key index,start,end,value column (1-based)" per window, comma-joined; ARGV[2]
# "key index,time" per latest read. Count and sum of events with time in [start, end): the running
# totals of the last entry before end minus those of the last entry before start, two O(log n)
# lookups (or, when nothing is left before start, minus the window's first entry without its own
# event); a window holding an inexact value is scanned and summed in time order instead. Lookups
# are memoised per key and time, so the 1 h, 3 h and 24 h windows of one request share the one at
# their common end. The reply is "count,sum,count,sum..." then, per latest read, the member and
# time of the last event at or before its time (two empty strings when there is none).
READ = """
local function numbers(s)
  local out = {}
  for x in string.gmatch(s, '[^,]+') do out[#out + 1] = x end
  return out
end
local widths, totals = {}, {}
-- Running totals (count, inexact_1..n, sum_1..n) of the last entry of KEYS[k + 1] before time t,
-- or false when there is none. An entry has 1 + 2n fields before the member and the member n
-- after its id: 1 + 3n bars.
local function before(k, t)
  local memo = k .. ',' .. t
  local f = totals[memo]
  if f == nil then
    local entry = redis.call('ZREVRANGEBYSCORE', KEYS[k + 1], '(' .. t, '-inf', 'LIMIT', 0, 1)[1]
    f = false
    if entry then
      if widths[k] == nil then
        local _, bars = string.gsub(entry, '|', '|')
        widths[k] = (bars - 1) / 3
      end
      f = parse(entry, widths[k])
    end
    totals[memo] = f
  end
  return f
end
local sums = {}
local w = numbers(ARGV[1])
for i = 1, #w, 4 do
  local k, start, stop, col = tonumber(w[i]), w[i + 1], w[i + 2], tonumber(w[i + 3])
  local count, total = 0, 0.0
  local last = before(k, stop)
  if last then
    local n, first = widths[k], before(k, start)
    local count0, inexact0, sum0 = last[1], 0, 0
    if first then
      count0, inexact0, sum0 = first[1], first[1 + col], first[1 + n + col]
    else
      -- Nothing left before start (evicted, or the key's first events): the totals before the
      -- window's first entry are that entry's minus its own event.
      local entry = redis.call('ZRANGEBYSCORE', KEYS[k + 1], start, '(' .. stop, 'LIMIT', 0, 1)[1]
      if entry then
        local f = before_entry(entry, n)
        count0, inexact0, sum0 = f[1], f[1 + col], f[1 + n + col]
      end
    end
    count = last[1] - count0
    if count > 0 then
      if last[1 + col] - inexact0 == 0 then
        total = last[1 + n + col] - sum0
      else
        for _, mem in ipairs(redis.call('ZRANGEBYSCORE', KEYS[k], start, '(' .. stop)) do
          total = total + values(mem, n)[col]
        end
      end
    end
  end
  sums[#sums + 1] = tostring(count)
  sums[#sums + 1] = string.format('%.17g', total)
end
local out = {table.concat(sums, ',')}
local a = numbers(ARGV[2])
for i = 1, #a, 2 do
  local events = KEYS[tonumber(a[i])]
  local last = redis.call('ZREVRANGEBYSCORE', events, a[i + 1], '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  out[#out + 1] = last[1] or ''
  out[#out + 1] = last[2] or ''
end
return out
"""
