-- scorehost's state exchange: one EVALSHA per plugin call (runtime/src/state/redis.rs).
-- The host plans every key and number; this script only applies them, writes first,
-- then reads, so an exchange is atomic and its answers see all of it.
--
-- ARGV[1]: 'w' (record) or 'r' (peek: nothing is written; idempotency keys are only tested).
-- Then ops, each a letter and its arguments (key arguments are indices into KEYS):
--   I key ttl_ms                      claim an idempotency key          -> 1 fresh, 0 seen
--   A key slot value expire_at idem   add to a tile page (idem: the I key, 0 for none)
--   D key item expire_at idem         add an item to a tile's HyperLogLog
--   G key                             read a tile page                  -> HGETALL
--   C n key...                        distinct count over n tiles        -> PFCOUNT
--   L key n field...                  read an offline table's fields     -> HMGET
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
    local k, slot, v, exp, idem = num(), take(), num(), num(), num()
    if counts(idem) then
      local key = KEYS[k]
      redis.call('HINCRBY', key, 'c' .. slot, 1)
      redis.call('HINCRBY', key, 's' .. slot, v)
      local m = redis.call('HGET', key, 'm' .. slot)
      if not m or v > tonumber(m) then
        redis.call('HSET', key, 'm' .. slot, v)
      end
      redis.call('PEXPIREAT', key, exp, 'NX')
    end
  elseif op == 'D' then
    local k, item, exp, idem = num(), take(), num(), num()
    if counts(idem) then
      redis.call('PFADD', KEYS[k], item)
      redis.call('PEXPIREAT', KEYS[k], exp, 'NX')
    end
  elseif op == 'G' then
    out[#out + 1] = redis.call('HGETALL', KEYS[num()])
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
