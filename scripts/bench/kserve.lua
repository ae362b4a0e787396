-- wrk script for scripts/bench-proxy.sh: POST the body in kserve.json (one KServe
-- v1 instance with 20 numeric features), and print the results as one line that
-- the script parses. BENCH_BODY overrides the body file.
local path = os.getenv("BENCH_BODY") or "scripts/bench/kserve.json"
local f = assert(io.open(path, "rb"))
local body = f:read("*a"):gsub("%s+$", "")
f:close()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = body

-- Latencies are in microseconds. status_errors counts answers with a status of
-- 400 or more; socket_errors are connect, read, write and timeout errors.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
