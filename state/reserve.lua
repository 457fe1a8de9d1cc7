-- Check every cap of each option in order and reserve the first option that all admit,
-- in all of its keys or in none; idempotent by offer_id (KEYS[1] records the reservation).
--
-- KEYS: [1] the offer record, then every cap key once.
-- ARGV[1]: JSON [offer_id, record_keep_ms, options]; an option is [tag, slot, checks]
--   (slot as a decimal string) and a check is
--   [key_index, cap_id, kind ('r' rolling | 'c' calendar), limit, lo, hi, keep_ms, prune]
--   with lo/hi/prune as ready-made score bounds: rolling '(slot-window' '(slot+window',
--   calendar 'start' '(end', prune '(before'. Rolling checks also carry window_ms as [9].
-- Returns {1, index, tag, replayed} or {0, {first refusing cap id per option}}.

local record = redis.call('GET', KEYS[1])
if record then
  local sep = string.find(record, '|', 1, true)
  return {1, tonumber(string.sub(record, 1, sep - 1)), string.sub(record, sep + 1), 1}
end

-- Admit iff no half-open interval [x, x+window) containing the new slot holds more than limit.
local function rolling_ok(key, slot, c)
  local raw = redis.call('ZRANGEBYSCORE', key, c[5], c[6], 'WITHSCORES')
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
  local window, limit, j = c[9], c[4], 1
  for i = 1, #times do
    if times[i] > slot then break end
    if j < i then j = i end
    while j <= #times and times[j] < times[i] + window do j = j + 1 end
    if j - i > limit then return false end
  end
  return true
end

local function admits(c, slot)
  local key = KEYS[c[1]]
  if c[3] == 'c' then
    return redis.call('ZCOUNT', key, c[5], c[6]) < c[4]
  end
  return rolling_ok(key, slot, c)
end

local function take(c, slot_text, offer_id)
  local key = KEYS[c[1]]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', c[8])
  redis.call('ZADD', key, slot_text, offer_id)
  if redis.call('PTTL', key) < c[7] then
    redis.call('PEXPIRE', key, c[7])
  end
end

local request = cjson.decode(ARGV[1])
local offer_id, record_keep, refused = request[1], request[2], {}
for o, option in ipairs(request[3]) do
  local tag, slot_text = option[1], option[2]
  local slot, refusal = tonumber(slot_text), nil
  for _, c in ipairs(option[3]) do
    if not admits(c, slot) then
      refusal = c[2]
      break
    end
  end
  if refusal == nil then
    for _, c in ipairs(option[3]) do take(c, slot_text, offer_id) end
    redis.call('SET', KEYS[1], (o - 1) .. '|' .. tag, 'PX', record_keep)
    return {1, o - 1, tag, 0}
  end
  refused[#refused + 1] = refusal
end
return {0, refused}
