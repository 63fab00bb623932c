-- Versioned write of rows of ONE SKU into their stock hashes and the SKU aggregate.
-- KEYS[1]: the SKU aggregate; KEYS[1 + i]: the stock hash of row i.
-- ARGV[1]: TTL in seconds; ARGV[2]: '1' when the rows are a complete read of the SKU from
-- PostgreSQL (a fill: the aggregate becomes complete), '0' for stock-changed events.
-- Then 7 values per row: warehouse, available, reserved, total, version, stock_id, at.
-- Returns one flag per row: 1 if the row was newer than what the cache held, else 0.
local agg = KEYS[1]
local ttl = tonumber(ARGV[1])
local fill = ARGV[2] == '1'
local agg_existed = redis.call('EXISTS', agg) == 1
local rows = (#ARGV - 2) / 7
local applied = {}
local changed = false

local function unpack_field(packed)
  local a, r, t, v, s = string.match(packed, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return a, r, t, tonumber(v), s
end

for i = 1, rows do
  local o = 2 + (i - 1) * 7
  local wh = ARGV[o + 1]
  local field = 'w:' .. wh
  local skey = KEYS[1 + i]
  local sid = ARGV[o + 6]
  -- the newest state stored, in the aggregate's field or in the stock hash
  local sa, sr, st, sv, sat = nil, nil, nil, -1, ''
  local packed = redis.call('HGET', agg, field)
  if packed then
    local ps
    sa, sr, st, sv, ps = unpack_field(packed)
    if sid == '' then sid = ps end
  end
  local h = redis.call('HMGET', skey, 'available', 'reserved', 'total', 'version', 'stock_id', 'at')
  if h[4] then
    local hv = tonumber(h[4])
    if hv > sv then sa, sr, st, sv, sat = h[1], h[2], h[3], hv, h[6] or '' end
    if sid == '' and h[5] then sid = h[5] end
  end
  -- the given row wins only when strictly newer
  local v = tonumber(ARGV[o + 5])
  if v > sv then
    sa, sr, st, sv, sat = ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], v, ARGV[o + 7]
    applied[i] = 1
  else
    applied[i] = 0
  end
  local svs = string.format('%d', sv)
  local newpacked = sa .. '|' .. sr .. '|' .. st .. '|' .. svs .. '|' .. sid
  if packed ~= newpacked then
    redis.call('HSET', agg, field, newpacked)
    changed = true
  end
  if (not h[4]) or tonumber(h[4]) ~= sv or (h[5] or '') ~= sid then
    redis.call('HSET', skey, 'available', sa, 'reserved', sr, 'total', st, 'version', svs,
      'stock_id', sid, 'at', sat)
    if not h[4] then redis.call('EXPIRE', skey, ttl) end
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
      local a, r, t, v = unpack_field(all[j + 1])
      ta, tr, tt, tv = ta + tonumber(a), tr + tonumber(r), tt + tonumber(t), tv + v
    end
  end
  redis.call('HSET', agg, 'available', string.format('%d', ta), 'reserved',
    string.format('%d', tr), 'total', string.format('%d', tt), 'version', string.format('%d', tv))
  if fill or not agg_existed then redis.call('EXPIRE', agg, ttl) end
end
return applied
