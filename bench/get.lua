-- wrk script of the books bench: one GET, the same path and token on every request.
--
--   wrk ... -s bench/get.lua URL -- PATH TOKEN
--
-- Every response is checked: non-2xx statuses are counted, and so are 2xx bodies without
-- '"status":true'. done() prints one JSON line starting with BENCH_JSON, as load.lua.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

non2xx = 0
unexpected = 0
responses = 0

function init(args)
  wrk.method = "GET"
  wrk.path = args[1]
  wrk.headers["Authorization"] = "Token " .. args[2]
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif not string.find(body, '"status":true', 1, true) then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local n, u, r = 0, 0, 0
  for _, thread in ipairs(threads) do
    n = n + thread:get("non2xx")
    u = u + thread:get("unexpected")
    r = r + thread:get("responses")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"responses":%d,"bytes":%d,' ..
    '"non2xx":%d,"unexpected":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d}}\n',
    summary.duration, summary.requests, r, summary.bytes,
    n, u, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
