-- Mixed read workload over 100 symbols (D000..D099) x 10 years of daily bars, as a research
-- cluster would send it: 60% one symbol x 10 years (arrow), 30% ten symbols x 1 year (json),
-- 10% all 100 symbols x 10 years (arrow, ~260k bars).
-- Run: wrk -t2 -c64 -d10s --latency -s benches/wrk/mixed.lua http://127.0.0.1:PORT/

local function sym(i) return string.format("D%03d", i) end

local function some(n)
  local seen, out = {}, {}
  while #out < n do
    local i = math.random(0, 99)
    if not seen[i] then seen[i] = true; out[#out + 1] = sym(i) end
  end
  return table.concat(out, ",")
end

local all = {}
for i = 0, 99 do all[#all + 1] = sym(i) end
all = table.concat(all, ",")

request = function()
  local r = math.random()
  local path
  if r < 0.6 then
    path = "/api/v1/bars?interval=1d&format=arrow&symbols=" .. sym(math.random(0, 99))
  elseif r < 0.9 then
    local y = math.random(2015, 2024)
    path = string.format("/api/v1/bars?interval=1d&format=json&start=%d-01-01&end=%d-01-01&symbols=%s",
      y, y + 1, some(10))
  else
    path = "/api/v1/bars?interval=1d&format=arrow&symbols=" .. all
  end
  return wrk.format("GET", path)
end
