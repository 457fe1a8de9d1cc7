-- Check every cap of each option in order and reserve the first option that all admit,
-- in all of its keys or in none; idempotent by offer_id (KEYS[1] records the reservation).
--
-- KEYS: [1] the offer record, then one key per check in argument order.
-- ARGV: offer_id, record_keep_ms, n_options, then per option: tag, slot_ms, n_checks,
--       then per check: cap_id, kind ('r' rolling | 'c' calendar), limit,
--       lo, hi (rolling: slot-window, slot+window; calendar: period start, end),
--       keep_ms, prune_before_ms.
-- Returns {1, index, tag, replayed} or {0, {first refusing cap id per option}}.

local record = redis.call('GET', KEYS[1])
if record then
  local sep = string.find(record, '|', 1, true)
  return {1, tonumber(string.sub(record, 1, sep - 1)), string.sub(record, sep + 1), 1}
end

-- Admit iff no half-open interval [x, x+window) containing the new slot holds more than limit.
local function rolling_ok(key, slot, lo, hi, limit)
  local raw = redis.call('ZRANGEBYSCORE', key, '(' .. lo, '(' .. hi, 'WITHSCORES')
  local times, inserted = {}, false
  for i = 2, #raw, 2 do
    local t = tonumber(raw[i])
    if not inserted and t > slot then
      times[#times + 1] = slot
      inserted = true
    end
    times[#times + 1] = t
  end
  if not inserted then times[#times + 1] = slot end
  local window = slot - tonumber(lo)
  local j = 1
  for i = 1, #times do
    if times[i] > slot then break end
    if j < i then j = i end
    while j <= #times and times[j] < times[i] + window do j = j + 1 end
    if j - i > limit then return false end
  end
  return true
end

local function admits(c, slot)
  if c.kind == 'c' then
    return redis.call('ZCOUNT', c.key, c.lo, '(' .. c.hi) < c.limit
  end
  return rolling_ok(c.key, slot, c.lo, c.hi, c.limit)
end

local function take(c, slot_text, offer_id)
  redis.call('ZREMRANGEBYSCORE', c.key, '-inf', '(' .. c.prune)
  redis.call('ZADD', c.key, slot_text, offer_id)
  if redis.call('PTTL', c.key) < c.keep then
    redis.call('PEXPIRE', c.key, c.keep)
  end
end

local offer_id, record_keep, n_options = ARGV[1], ARGV[2], tonumber(ARGV[3])
local a, k, refused = 4, 2, {}
for o = 1, n_options do
  local tag, slot_text, n_checks = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local slot = tonumber(slot_text)
  a = a + 3
  local checks, refusal = {}, nil
  for i = 1, n_checks do
    local c = {key = KEYS[k], cap = ARGV[a], kind = ARGV[a + 1], limit = tonumber(ARGV[a + 2]),
               lo = ARGV[a + 3], hi = ARGV[a + 4], keep = tonumber(ARGV[a + 5]), prune = ARGV[a + 6]}
    checks[i] = c
    k, a = k + 1, a + 7
    if refusal == nil and not admits(c, slot) then refusal = c.cap end
  end
  if refusal == nil then
    for _, c in ipairs(checks) do take(c, slot_text, offer_id) end
    redis.call('SET', KEYS[1], (o - 1) .. '|' .. tag, 'PX', record_keep)
    return {1, o - 1, tag, 0}
  end
  refused[#refused + 1] = refusal
end
return {0, refused}
