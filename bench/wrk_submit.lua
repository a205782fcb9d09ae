-- wrk script for bench_core.py: POST an empty JSON object to the URL wrk was given
-- (/v1/functions/<name>/invocations). No per-request Lua callbacks, so wrk stays a light load generator;
-- wrk itself counts non-2xx answers and the bench cross-checks accepted submissions in the ledger.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
