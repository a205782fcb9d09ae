"""The console's invocations page on a ledger of 1,000,000 invocations (Postgres): p50/p95 per page for several
filters, beside the plain alternative (OFFSET pagination + an exact COUNT(*) per status) in the same run.

    .venv/bin/python bench/bench_console.py [--rows 1000000] [--requests 50] [--quick]

The ledger is loaded with one INSERT … SELECT generate_series: 8 functions with skewed traffic, statuses mostly
Succeeded (Running/Enqueued only among the newest), random hex invocation ids, created_at spread evenly over 7 days.
Our figures are whole pages (Flask test client: queries + template); the plain alternative's are its two queries
alone, without rendering, which flatters it. Nothing is asserted; figures go to bench/results/<run id>/.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import run_header, step  # noqa: E402
from bench.machine import background_load  # noqa: E402
from bench.results import Figure, Report, guarded_run, percentile, print_report  # noqa: E402
from taskservice import create_app, migrate  # noqa: E402
from taskservice.config import Settings  # noqa: E402
from taskservice.db import make_engine  # noqa: E402
from taskservice.ledger.queries import encode_cursor  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ("etl", "thumbnail", "transcode", "report", "email", "webhook", "ml_train", "backup")
TARGET_MS = 100.0

LOAD = """
INSERT INTO invocations (function, invocation_id, request_id, status, payload, attempts, created_at, started_at,
                         finished_at, log_lines, updated_at, retry_base, condition, error_type)
SELECT f.function, substr(md5(g::text), 1, 16), md5(g::text || 'r')::uuid::text, s.status::invocation_status,
       '{"n":' || g || '}', 1, c.created_at,
       CASE WHEN s.status NOT IN ('Enqueued', 'Retrying') THEN c.created_at + interval '50 ms' END,
       CASE WHEN s.status NOT IN ('Enqueued', 'Retrying', 'Running') THEN c.created_at + interval '50 ms'
            + (f.base_ms + (g * 7919) % (4 * f.base_ms)) * interval '1 ms' END,
       0, c.created_at, 0,
       CASE s.status WHEN 'Succeeded' THEN '' WHEN 'Failed' THEN 'RetriesExhausted' WHEN 'Stopped' THEN 'Stopped'
                     WHEN 'Expired' THEN 'EventAgeExceeded' WHEN 'Invalid' THEN 'Invalid' END,
       CASE WHEN s.status = 'Failed' THEN 'Unhandled' END
FROM generate_series(1::bigint, :rows) AS g
CROSS JOIN LATERAL (SELECT :start + (g - 1) * :step * interval '1 ms' AS created_at) AS c
CROSS JOIN LATERAL (SELECT CASE WHEN g % 100 < 35 THEN 'etl' WHEN g % 100 < 60 THEN 'thumbnail'
                                WHEN g % 100 < 75 THEN 'transcode' WHEN g % 100 < 85 THEN 'report'
                                WHEN g % 100 < 92 THEN 'email' WHEN g % 100 < 97 THEN 'webhook'
                                WHEN g % 100 < 99 THEN 'ml_train' ELSE 'backup' END AS function,
                           CASE WHEN g % 100 < 60 THEN 200 ELSE 3000 END AS base_ms) AS f
CROSS JOIN LATERAL (SELECT CASE WHEN g > :rows - 200 AND g % 4 = 0 THEN 'Enqueued'
                                WHEN g > :rows - 200 AND g % 4 = 1 THEN 'Running'
                                WHEN (g * 31) % 1000 < 40 THEN 'Failed' WHEN (g * 31) % 1000 < 50 THEN 'Stopped'
                                WHEN (g * 31) % 1000 < 55 THEN 'Expired' WHEN (g * 31) % 1000 < 57 THEN 'Invalid'
                                WHEN (g * 31) % 1000 < 59 AND g > :rows - 5000 THEN 'Retrying'
                                ELSE 'Succeeded' END AS status) AS s
ORDER BY g
"""


def load(engine: Engine, rows: int, days: float) -> float:
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=days)
    step_ms = days * 86_400_000 / rows
    began = time.monotonic()
    with engine.begin() as conn:
        for name in FUNCTIONS:
            conn.execute(text("INSERT INTO functions (name, handler, timeout_s, max_retries, max_event_age_s, "
                              "description, created_at, updated_at) VALUES (:n, 'workers.handlers.noop:handler', "
                              "600, 3, 86400, '', :t, :t)"), {"n": name, "t": start})
        conn.execute(text(LOAD), {"rows": rows, "start": start, "step": step_ms})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE invocations"))
    return time.monotonic() - began


def timed(call: Callable[[], Any], n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def plain(engine: Engine, where: str, params: dict[str, Any], offset: int) -> Callable[[], None]:
    """The plain alternative: OFFSET pagination and an exact count per status under the same filter."""
    page = text(f"SELECT id, function, invocation_id, status, attempts, created_at, started_at, finished_at "
                f"FROM invocations WHERE {where} ORDER BY id DESC LIMIT 51 OFFSET {offset}")
    counts = text(f"SELECT status, count(*) FROM invocations WHERE {where} GROUP BY status")

    def run() -> None:
        with engine.connect() as conn:
            conn.execute(page, params).all()
            conn.execute(counts, params).all()
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50, help="requests per filter for the console (default 50)")
    parser.add_argument("--plain-requests", type=int, default=10, help="per filter for the plain alternative")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 20 requests per filter")
    args = parser.parse_args(argv)
    rows, n = (200_000, 20) if args.quick else (args.rows, args.requests)
    run_id = f"{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
    db = f"bench_console_{run_id}"
    results_dir = REPO / "bench" / "results" / run_id
    results_dir.mkdir(parents=True, exist_ok=True)
    admin = make_engine(f"{args.postgres}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    report, info = Report(), {}
    engines: list[Engine] = []

    def body() -> None:
        idle = background_load()
        step(f"setup: database {db}, results in {results_dir}")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        settings = Settings(database_url=f"{args.postgres}/{db}", data_dir=results_dir, auth=False)
        engine = make_engine(settings.database_url)
        engines.append(engine)
        migrate.upgrade(engine)
        step(f"loading {rows:,} invocations")
        load_s = load(engine, rows, days=7)
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar()
        info.update({**run_header(run_id, idle), "postgres": f"PostgreSQL {version}",
                     "ledger": f"{rows:,} invocations over 7 days, loaded in {load_s:.0f} s, then VACUUM ANALYZE"})
        app = create_app(settings)
        engines.append(app.extensions["taskservice"].engine)
        client = app.test_client()
        with engine.connect() as conn:
            max_id = conn.execute(text("SELECT max(id) FROM invocations")).scalar_one()
        day3 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
        since, until = day3.strftime("%Y-%m-%dT%H:%M:%S"), (day3 + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S")
        deep = encode_cursor(max_id // 2)
        cases = [
            ("no filter", "/", "true", {}, 0),
            ("one function", "/?function=thumbnail", "function = :f", {"f": "thumbnail"}, 0),
            ("two statuses", "/?status=Failed&status=Stopped", "status IN ('Failed', 'Stopped')", {}, 0),
            ("function + status", "/?function=report&status=Failed", "function = :f AND status = 'Failed'",
             {"f": "report"}, 0),
            ("rare function + status", "/?function=backup&status=Invalid", "function = :f AND status = 'Invalid'",
             {"f": "backup"}, 0),
            ("id prefix 'abc'", "/?prefix=abc", "invocation_id LIKE 'abc%'", {}, 0),
            ("last hour", "/?window=1h", "created_at >= now() - interval '1 hour'", {}, 0),
            ("6 h window 4 days ago", f"/?since={since}&until={until}", "created_at >= :s AND created_at < :u",
             {"s": day3, "u": day3 + timedelta(hours=6)}, 0),
            ("deep page (middle of the ledger)", f"/?older={deep}", "true", {}, max_id // 2),
        ]
        for label, url, where, params, offset in cases:
            step(f"{label}: {url}")
            status = client.get(url).status_code
            if status != 200:
                raise RuntimeError(f"{url} answered {status}")
            ours = timed(lambda u=url: client.get(u), n)
            theirs = timed(plain(engine, where, params, offset), args.plain_requests, warmup=1)
            p95 = percentile(ours, 95)
            report.add(Figure("1", f"console page, {label}", p95, "ms",
                              f"p50 {percentile(ours, 50):.1f} ms, mean {statistics.fmean(ours):.1f} ms over {n}; "
                              f"plain OFFSET + COUNT(*) p50 {percentile(theirs, 50):.1f} ms, p95 "
                              f"{percentile(theirs, 95):.1f} ms over {args.plain_requests}",
                              target=f"p95 < {TARGET_MS:.0f} ms", met=p95 is not None and p95 < TARGET_MS))
            report.add(Figure("2", f"plain alternative, {label}", percentile(theirs, 95), "ms", target="",
                              detail=f"queries only: OFFSET {offset:,} LIMIT 51 + exact count per status"))
        for label, url in (("functions page", "/functions"), ("dashboard", "/dashboard")):
            step(f"{label}: {url}")
            samples = timed(lambda u=url: client.get(u), max(5, n // 5))
            report.add(Figure("3", label, percentile(samples, 95), "ms",
                              f"p50 {percentile(samples, 50):.1f} ms over {len(samples)} (p95 shown)"))
        app.extensions["taskservice"].close()

    def teardown() -> None:
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()

    status = guarded_run(body, teardown)
    if report.figures:
        print_report("taskservice console on a large ledger (p95 per page)", info, report, results_dir,
                     artifacts="Figures")
    return status


if __name__ == "__main__":
    sys.exit(main())
