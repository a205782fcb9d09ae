"""The functions page and the dashboard: the health of each function and of the whole service at a glance."""
from __future__ import annotations

from datetime import timedelta

from flask import render_template, request

from taskservice.console.blueprint import console, services, stats
from taskservice.console.charts import durations_chart, per_minute_chart
from taskservice.errors import InvalidQuery

HEALTH_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
HEALTH_SAMPLE = 1000


def _health_window() -> str:
    window = request.args.get("window") or "24h"
    if window not in HEALTH_WINDOWS:
        raise InvalidQuery(f"unknown window {window!r}; one of {', '.join(HEALTH_WINDOWS)}")
    return window


@console.get("/functions")
def functions() -> str:
    window = _health_window()
    fns = services().ledger.list_functions()
    health = stats().function_health([f.name for f in fns], window=HEALTH_WINDOWS[window], sample=HEALTH_SAMPLE)
    return render_template("functions.html", functions=fns, health=health, window=window,
                           windows=list(HEALTH_WINDOWS), sample=HEALTH_SAMPLE)


@console.get("/dashboard")
def dashboard() -> str:
    window = _health_window()
    fns = services().ledger.list_functions()
    health = stats().function_health([f.name for f in fns], window=HEALTH_WINDOWS[window], sample=HEALTH_SAMPLE)
    buckets = stats().per_minute(minutes=60)
    totals = {s: sum(b.counts.get(s, 0) for b in buckets) for s in {s for b in buckets for s in b.counts}}
    return render_template("dashboard.html", minute_chart=per_minute_chart(buckets),
                           duration_chart=durations_chart(list(health.values())), totals=totals,
                           total=sum(totals.values()), window=window, windows=list(HEALTH_WINDOWS),
                           sample=HEALTH_SAMPLE)
