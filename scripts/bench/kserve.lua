-- wrk script for scripts/bench-proxy.sh: POST one KServe v1 instance with 20
-- numeric features, and print the results in one parseable line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"instances":[{"amount":120.5,"age":41,"tenure_months":36,"transactions_24h":3,' ..
  '"avg_amount_30d":98.2,"distance_from_home_km":12.4,"hour_of_day":14,"is_foreign":0,' ..
  '"card_present":1,"merchant_risk":0.18,"device_age_days":412,"failed_logins_24h":0,' ..
  '"chargebacks_1y":0,"account_balance":2310.75,"credit_limit":5000,"utilization":0.27,' ..
  '"velocity_1h":1,"ip_risk":0.07,"email_age_days":1350,"shipping_mismatch":0}]}'

-- Latencies are in microseconds. status counts non-2xx/3xx answers; socket
-- errors are connect, read, write and timeout errors.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
