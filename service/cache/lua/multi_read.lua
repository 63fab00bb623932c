-- The SKU aggregates KEYS in one call, each as one string ('' when absent): '1' if complete
-- else '0', then per warehouse a line: its field as versioned_write.lua packs it, then the
-- warehouse, 'available|reserved|total|version|safety_stock|reorder_point|backorder_limit|
-- backordered|stock_id|warehouse' (ids are printable, so a newline cannot occur in them).
local out = {}
for i = 1, #KEYS do
  local all = redis.call('HGETALL', KEYS[i])
  if #all == 0 then
    out[i] = ''
  else
    local parts = {'0'}
    for j = 1, #all, 2 do
      local name = all[j]
      if string.sub(name, 1, 2) == 'w:' then
        parts[#parts + 1] = all[j + 1] .. '|' .. string.sub(name, 3)
      elseif name == 'complete' and all[j + 1] == '1' then
        parts[1] = '1'
      end
    end
    out[i] = table.concat(parts, '\n')
  end
end
return out
