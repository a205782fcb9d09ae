-- wrk script for bench_throughput.py: POST {} to /v1/functions/<name>/invocations with the bearer token in
-- BENCH_TOKEN, so the measured API runs with auth on as production does. No per-request Lua callbacks.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
