"""The dashboard's figures against rows with known timestamps, on SQLite and on Postgres.

Each test gets a ledger of its own: the figures cover every invocation of the last hour, so rows left by other
tests in the session's shared ledger would make exact counts impossible.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from taskservice import create_app
from taskservice.ledger.models import INVOCATIONS
from taskservice.ledger.states import TERMINAL, Status
from taskservice.ledger.stats import ConsoleStats
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend

TITLE = re.compile(r"<title>(\d\d:\d\d) UTC · (\w+): ([\d,]+)</title>")
Y_TICK = re.compile(r'<text class="tick" x="38" y="[^"]+" text-anchor="end">([^<]+)</text>')


@dataclass
class Ledger:
    client: FlaskClient
    services: Services


@pytest.fixture
def own_ledger(backend: Backend, new_backend: Callable[..., Backend]) -> Iterator[Ledger]:
    """A fresh, migrated ledger of the same kind as `backend` (so the test runs once per backend)."""
    app = create_app(new_backend(backend.name).settings)
    services: Services = app.extensions["taskservice"]
    try:
        yield Ledger(app.test_client(), services)
    finally:
        services.close()


def write(ledger: Ledger, function: str, rows: list[tuple[datetime, Status]]) -> None:
    """Rows created at the given instants (in that order, so ids grow with created_at as they do in production),
    ended ones finished a second later: a known history without running handlers."""
    for n, (created, status) in enumerate(rows):
        inv = ledger.services.ledger.create_invocation(function, f"m{n}", str(uuid.uuid4()), "{}")
        ended = status in TERMINAL
        with ledger.services.engine.begin() as conn:
            conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id == inv.pk).values(
                status=status, created_at=created, updated_at=created,
                started_at=created if ended else None, finished_at=created + timedelta(seconds=1) if ended else None))


def test_per_minute_counts_and_total_on_the_dashboard(own_ledger: Ledger, deploy: Callable[..., Any]) -> None:
    deploy(own_ledger.client, "figures", "tests.handlers:counted")
    now = datetime.now(timezone.utc)
    a = now.replace(second=0, microsecond=0) - timedelta(minutes=3)
    b = a + timedelta(minutes=1)
    write(own_ledger, "figures", [
        (a - timedelta(hours=2), Status.SUCCEEDED),  # outside the hour: counted nowhere
        (a, Status.SUCCEEDED),  # the first instant of minute a
        (a + timedelta(seconds=20), Status.FAILED),
        (a + timedelta(seconds=45), Status.SUCCEEDED),
        (a + timedelta(seconds=59, microseconds=900_000), Status.SUCCEEDED),  # still a, not rounded into b
        (b, Status.STOPPED),
        (b + timedelta(seconds=30), Status.ENQUEUED),
    ])

    buckets = ConsoleStats(own_ledger.services.engine).per_minute(minutes=60, now=now)
    assert len(buckets) == 60 and buckets[-1].start == now.replace(second=0, microsecond=0)
    by_minute = {bucket.start: bucket.counts for bucket in buckets if bucket.counts}
    assert by_minute == {a: {Status.SUCCEEDED: 3, Status.FAILED: 1}, b: {Status.STOPPED: 1, Status.ENQUEUED: 1}}

    page = own_ledger.client.get("/dashboard").get_data(as_text=True)
    assert "· 6 in all</span>" in page
    bars = {(minute, status, int(n.replace(",", ""))) for minute, status, n in TITLE.findall(page)}
    assert bars == {(f"{a:%H:%M}", "Succeeded", 3), (f"{a:%H:%M}", "Failed", 1),
                    (f"{b:%H:%M}", "Stopped", 1), (f"{b:%H:%M}", "Enqueued", 1)}
    assert Y_TICK.findall(page) == ["0", "1", "2", "3", "4"]  # the busiest minute holds 4
