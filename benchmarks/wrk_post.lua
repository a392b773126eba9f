-- wrk script of the HTTP benchmarks (benchmarks/http_profile.py, benchmarks/event_ingestion.py).
-- Environment: WRK_BODIES (file, one JSON request body per line, sent round-robin),
-- WRK_PATH, WRK_AUTH (bearer key, optional), WRK_DELAY_MS (think time per connection between
-- a response and its next request: a paced closed loop; 0 = as fast as possible),
-- WRK_OUT (JSON summary written by done()).
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local path = os.getenv("WRK_PATH") or "/"
local headers = { ["Content-Type"] = "application/json" }
local auth = os.getenv("WRK_AUTH")
if auth and #auth > 0 then headers["Authorization"] = "Bearer " .. auth end
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
local idx = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

function init(args)
  idx = (offset or 0) % #bodies
end

function request()
  idx = idx % #bodies + 1
  return wrk.format("POST", path, headers, bodies[idx])
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local f = assert(io.open(os.getenv("WRK_OUT"), "w"))
  local e = summary.errors
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "mean_us": %.1f, "max_us": %d, "percentiles": {',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max))
  local ps = {}
  for p = 1, 99 do ps[#ps + 1] = p end
  for _, p in ipairs({99.5, 99.9, 99.99}) do ps[#ps + 1] = p end
  for i, p in ipairs(ps) do
    f:write(string.format('%s"%g": %d', i > 1 and ", " or "", p, latency:percentile(p)))
  end
  f:write("}}\n")
  f:close()
end
