-- wrk script: single-event POSTs of a 100-byte payload, keyed over 64 keys, to stream
-- "load" of a running `cloudstream serve` (see BENCHMARKS.md):
--   wrk -t1 -c64 -d10s -s scripts/load/single.lua --latency http://127.0.0.1:7171
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"payload":"%s","key":"k%d"}', string.rep("x", 100), counter % 64)
  return wrk.format(nil, "/v1/streams/load/events", nil, body)
end
