-- Versioned write of rows of ONE SKU into their stock hashes and the SKU aggregate.
-- KEYS[1]: the SKU aggregate; KEYS[1 + i]: the stock hash of row i.
-- ARGV[1]: TTL in seconds; ARGV[2]: '1' when the rows are a complete read of the SKU from
-- PostgreSQL (a fill: the aggregate becomes complete), '0' for stock-changed events.
-- Then 11 values per row: warehouse, available, reserved, total, version, stock_id, at,
-- safety_stock, reorder_point ('' for none), backorder_limit, backordered.
-- A row's state is the 8 values STATE names, kept as the strings given (available and total
-- may be negative); the aggregate's field packs them as 'v1|...|v8|stock_id'.
-- Returns one flag per row: 1 if the row was newer than what the cache held, else 0.
local STATE = {'available', 'reserved', 'total', 'version', 'safety_stock', 'reorder_point',
  'backorder_limit', 'backordered'}
local VERSION = 4
local PACKED = '^' .. string.rep('([^|]*)|', #STATE) .. '(.*)$'
local PER_ROW = 11

local agg = KEYS[1]
local ttl = tonumber(ARGV[1])
local fill = ARGV[2] == '1'
local agg_existed = redis.call('EXISTS', agg) == 1
local rows = (#ARGV - 2) / PER_ROW
local applied = {}
local changed = false

-- The state packed in an aggregate field, and its stock id; nil for a value in another
-- format (never written under this key prefix): it counts as absent.
local function unpack_field(packed)
  local parts = {string.match(packed, PACKED)}
  if #parts ~= #STATE + 1 or not tonumber(parts[VERSION]) then return nil end
  local sid = table.remove(parts)
  return parts, sid
end

-- The state of a stock hash (HMGET of STATE, then stock_id and at); nil when incomplete.
local function hash_state(h)
  local state = {}
  for k = 1, #STATE do
    if not h[k] then return nil end
    state[k] = h[k]
  end
  if not tonumber(state[VERSION]) then return nil end
  return state
end

local hash_fields = {}
for k = 1, #STATE do hash_fields[k] = STATE[k] end
hash_fields[#STATE + 1] = 'stock_id'
hash_fields[#STATE + 2] = 'at'

for i = 1, rows do
  local o = 2 + (i - 1) * PER_ROW
  local field = 'w:' .. ARGV[o + 1]
  local skey = KEYS[1 + i]
  local sid = ARGV[o + 6]
  -- the newest state stored, in the aggregate's field or in the stock hash
  local best, bv, bat = nil, -1, ''
  local packed = redis.call('HGET', agg, field)
  if packed then
    local state, psid = unpack_field(packed)
    if state then
      best, bv = state, tonumber(state[VERSION])
      if sid == '' then sid = psid end
    end
  end
  local h = redis.call('HMGET', skey, unpack(hash_fields))
  local hstate = hash_state(h)
  local hv = hstate and tonumber(hstate[VERSION])
  if hstate then
    if hv > bv then best, bv, bat = hstate, hv, h[#STATE + 2] or '' end
    if sid == '' and h[#STATE + 1] then sid = h[#STATE + 1] end
  end
  -- the given row wins only when strictly newer
  local v = tonumber(ARGV[o + 5])
  if v > bv then
    best = {ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], ARGV[o + 5], ARGV[o + 8], ARGV[o + 9],
      ARGV[o + 10], ARGV[o + 11]}
    bv, bat = v, ARGV[o + 7]
    applied[i] = 1
  else
    applied[i] = 0
  end
  best[VERSION] = string.format('%d', bv)
  local newpacked = table.concat(best, '|') .. '|' .. sid
  if packed ~= newpacked then
    redis.call('HSET', agg, field, newpacked)
    changed = true
  end
  if (not hstate) or hv ~= bv or (h[#STATE + 1] or '') ~= sid then
    local values = {}
    for k = 1, #STATE do
      values[#values + 1] = STATE[k]
      values[#values + 1] = best[k]
    end
    redis.call('HSET', skey, 'stock_id', sid, 'at', bat, unpack(values))
    if not h[VERSION] then redis.call('EXPIRE', skey, ttl) end
  end
end

if fill then
  redis.call('HSET', agg, 'complete', '1')
  changed = true
end
if changed then
  local all = redis.call('HGETALL', agg)
  local ta, tr, tt, tv = 0, 0, 0, 0
  for j = 1, #all, 2 do
    if string.sub(all[j], 1, 2) == 'w:' then
      local state = unpack_field(all[j + 1])
      if state then
        ta, tr = ta + tonumber(state[1]), tr + tonumber(state[2])
        tt, tv = tt + tonumber(state[3]), tv + tonumber(state[VERSION])
      end
    end
  end
  redis.call('HSET', agg, 'available', string.format('%d', ta), 'reserved',
    string.format('%d', tr), 'total', string.format('%d', tt), 'version', string.format('%d', tv))
  if fill or not agg_existed then redis.call('EXPIRE', agg, ttl) end
end
return applied
