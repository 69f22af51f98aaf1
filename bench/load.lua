-- wrk script of the bench: one POST per request, each with a unique reference.
--
--   wrk ... -s bench/load.lua URL -- MODE NONCE TOKEN[,TOKEN...] [RAMP_MS CONNECTIONS]
--
-- MODE "details": HashCNet V2 details of jeetenaug4 (service_slug vns).
-- MODE "commit":  Arrownet commit of Pradhanang, 1 month, "1695.00".
-- The merchant's token is taken in turn from the list, request by request.
-- References are NONCE-thread-counter: unique across threads, runs and warm-ups.
-- Every response is checked: non-2xx statuses are counted, and so are 2xx bodies that
-- lack the expected text ('"session_id":' for details, '"state":"Success"' for commit,
-- so a commit answered Processing counts as unexpected). done() prints one JSON line
-- starting with BENCH_JSON: counts, and latency percentiles in microseconds.
-- RAMP_MS > 0: the first request of each of the thread's CONNECTIONS waits a random
-- 0..RAMP_MS first, so that connections start spread over that time, as clients do,
-- not all in the same millisecond; wrk starts a request's latency clock after the wait.

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local mode, nonce, path, expect
local tokens = {}
local counter = 0
non2xx = 0
unexpected = 0
responses = 0

function init(args)
  mode, nonce = args[1], args[2]
  for token in string.gmatch(args[3], "[^,]+") do
    table.insert(tokens, token)
  end
  if mode == "details" then
    path = "/api/servicegroup/details/hashcnet-v2/"
    expect = '"session_id":'
  elseif mode == "commit" then
    path = "/api/servicegroup/commit/arrownet/"
    expect = '"state":"Success"'
  else
    error("unknown mode " .. tostring(mode))
  end
  wrk.headers["Content-Type"] = "application/json"
  local ramp_ms, connections = tonumber(args[4] or "0"), tonumber(args[5] or "0")
  if ramp_ms > 0 then
    -- wrk asks delay() before every request once it exists, so it exists only here.
    -- Each connection writes its first request before any answer comes back, so the
    -- first CONNECTIONS calls are the first requests.
    local first_requests = 0
    math.randomseed(tid)
    function delay()
      if first_requests < connections then
        first_requests = first_requests + 1
        return math.random(0, ramp_ms)
      end
      return 0
    end
  end
end

function request()
  counter = counter + 1
  local token = tokens[(counter % #tokens) + 1]
  local reference = nonce .. "-" .. tid .. "-" .. counter
  local body
  if mode == "details" then
    body = '{"token":"' .. token .. '","reference":"' .. reference ..
      '","username":"jeetenaug4","service_slug":"vns"}'
  else
    body = '{"token":"' .. token .. '","reference":"' .. reference ..
      '","username":"Pradhanang","amount":"1695.00","duration":1}'
  end
  return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif not string.find(body, expect, 1, true) then
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
