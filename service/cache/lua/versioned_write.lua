-- Versioned write of stock rows into their stock hashes and their SKUs' aggregates, for one or
-- more SKUs in one call (one call per batch: the engine's writes of a batch, a fill).
-- ARGV[1]: TTL in seconds. Then per SKU: '1' when its rows are a complete read of the SKU from
-- PostgreSQL (a fill: the aggregate becomes complete) else '0' (stock-changed events), its
-- number of rows, then one value per row: 'available|reserved|total|version|stock_id|at|
-- safety_stock|reorder_point|backorder_limit|backordered|warehouse' (reorder_point and at ''
-- for none; the warehouse last, as it may hold '|'). One string per row rather than eleven
-- arguments: the client packs every argument in Python, and that was most of a write's CPU.
-- KEYS, per SKU in the same order: its aggregate, then the stock hash of each of its rows.
-- A row's state is the 8 values STATE names, kept as the strings given (available and total
-- may be negative); the aggregate's field packs them as 'v1|...|v8|stock_id'.
-- Returns, per SKU, one flag per row: 1 if the row was newer than what the cache held, else 0.
local STATE = {'available', 'reserved', 'total', 'version', 'safety_stock', 'reorder_point',
  'backorder_limit', 'backordered'}
local VERSION = 4
local PACKED = '^' .. string.rep('([^|]*)|', #STATE) .. '(.*)$'
local ROW = '^' .. string.rep('([^|]*)|', 10) .. '(.*)$'

local ttl = tonumber(ARGV[1])

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

-- Write the rows of the SKU whose aggregate is KEYS[agg_at] (its rows' hashes follow it);
-- its rows' values start after ARGV[before]. Returns one flag per row.
local function write_sku(agg_at, before, rows, fill)
  local agg = KEYS[agg_at]
  local agg_existed = redis.call('EXISTS', agg) == 1
  local applied = {}
  local changed = false
  for i = 1, rows do
    local v = {string.match(ARGV[before + i], ROW)}
    -- in the order: warehouse, available, reserved, total, version, stock_id, at,
    -- safety_stock, reorder_point, backorder_limit, backordered
    local r = {v[11], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]}
    local field = 'w:' .. r[1]
    local skey = KEYS[agg_at + i]
    local sid = r[6]
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
    local version = tonumber(r[5])
    if version > bv then
      best = {r[2], r[3], r[4], r[5], r[8], r[9], r[10], r[11]}
      bv, bat = version, r[7]
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
end

local out = {}
local k, a = 1, 2
while a <= #ARGV do
  local fill = ARGV[a] == '1'
  local rows = tonumber(ARGV[a + 1])
  out[#out + 1] = write_sku(k, a + 1, rows, fill)
  k = k + 1 + rows
  a = a + 2 + rows
end
return out
