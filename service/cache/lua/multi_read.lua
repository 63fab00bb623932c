-- The SKU aggregates KEYS in one call, each as one string ('' when absent): '1' if complete
-- else '0', then per warehouse a line 'available|reserved|total|version|stock_id|warehouse'
-- (ids are printable, so a newline cannot occur in them).
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
