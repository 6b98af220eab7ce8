-- scorehost's state exchange: one EVALSHA per plugin call (runtime/src/state/redis.rs).
-- The host plans every key and number; this script only applies them, writes first,
-- then reads, so an exchange is atomic and its answers see all of it. A tile is one
-- hash field `t<slot>` = "count:sum:max" in its page (60 tiles per page).
--
-- ARGV[1]: 'w' (record) or 'r' (peek: nothing is written; idempotency keys are only tested).
-- Then ops, each a letter and its arguments (key arguments are indices into KEYS):
--   I key ttl_ms                          claim an idempotency key    -> 1 fresh, 0 seen
--   A key slot value expire_at idem       add to a tile (idem: the I key, 0 for none)
--   D key item expire_at idem             add an item to a tile's HyperLogLog
--   R np {key lo hi base}*np nw {n}*nw    one level's windows: tiles lo..hi of each page,
--                                         age = base - slot; window i sums ages 0..n_i
--                                         -> per window {count, sum, max or false}
--   C n key...                            distinct count over n tiles -> PFCOUNT
--   L key n field...                      an offline table's fields   -> HMGET
local write = ARGV[1] == 'w'
local out, fresh, a = {}, {}, 2

local function take()
  local v = ARGV[a]
  a = a + 1
  return v
end

local function num()
  return tonumber(take())
end

local function counts(idem)
  return write and (idem == 0 or fresh[idem])
end

local function parse(tile)
  local c, s, m = string.match(tile, '^(%d+):(%-?%d+):(%-?%d+)$')
  return tonumber(c), tonumber(s), tonumber(m)
end

while a <= #ARGV do
  local op = take()
  if op == 'I' then
    local k, ttl = num(), num()
    if write then
      fresh[k] = redis.call('SET', KEYS[k], '1', 'NX', 'PX', ttl) ~= false
    else
      fresh[k] = redis.call('EXISTS', KEYS[k]) == 0
    end
    out[#out + 1] = fresh[k] and 1 or 0
  elseif op == 'A' then
    local k, field, v, exp, idem = num(), 't' .. take(), num(), take(), num()
    if counts(idem) then
      local key = KEYS[k]
      local tile = redis.call('HGET', key, field)
      if tile then
        local c, s, m = parse(tile)
        redis.call('HSET', key, field, string.format('%d:%d:%d', c + 1, s + v, math.max(m, v)))
      else
        redis.call('HSET', key, field, string.format('%d:%d:%d', 1, v, v))
        -- A tile's first write (re)sets its page's expiry: the page's end plus
        -- the retention, the same for every tile of the page.
        redis.call('PEXPIREAT', key, exp)
      end
    end
  elseif op == 'D' then
    local k, item, exp, idem = num(), take(), num(), num()
    if counts(idem) then
      if redis.call('PFADD', KEYS[k], item) == 1 then
        redis.call('PEXPIREAT', KEYS[k], exp)
      end
    end
  elseif op == 'R' then
    local ages = {}
    for _ = 1, num() do
      local k, lo, hi, base = num(), num(), num(), num()
      -- HGETALL, not HMGET of lo..hi: it answers only the tiles there are
      -- (most entities are sparse), and costs Redis half as much here.
      local all = redis.call('HGETALL', KEYS[k])
      for j = 1, #all, 2 do
        local slot = tonumber(string.sub(all[j], 2))
        if slot and slot >= lo and slot <= hi then
          ages[#ages + 1] = { base - slot, parse(all[j + 1]) }
        end
      end
    end
    local windows = {}
    for i = 1, num() do
      local n, c, s, m = num(), 0, 0, false
      for _, t in ipairs(ages) do
        if t[1] <= n then
          c, s = c + t[2], s + t[3]
          if not m or t[4] > m then
            m = t[4]
          end
        end
      end
      windows[i] = { c, s, m }
    end
    out[#out + 1] = windows
  elseif op == 'C' then
    local hk = {}
    for j = 1, num() do
      hk[j] = KEYS[num()]
    end
    out[#out + 1] = redis.call('PFCOUNT', unpack(hk))
  elseif op == 'L' then
    local k, fields = num(), {}
    for j = 1, num() do
      fields[j] = take()
    end
    out[#out + 1] = redis.call('HMGET', KEYS[k], unpack(fields))
  else
    return redis.error_reply('scorehost state script: unknown op ' .. tostring(op))
  end
end
return out
