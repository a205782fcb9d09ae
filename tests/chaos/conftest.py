"""Fault injection on the machine's own Postgres and RabbitMQ (design §9): stop, start and restart them, always
bringing them back in a finalizer, also when the test fails."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.servers import PG_VERSION, Postgres, RabbitMQ


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if not PG_VERSION:
        pytest.fail("no PostgreSQL cluster under /etc/postgresql: these tests stop and start the machine's own")
    pg = Postgres()
    yield pg
    pg.ensure_running()


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQ]:
    rabbit = RabbitMQ()
    yield rabbit
    rabbit.ensure_running()


@pytest.fixture
def fault_clock() -> Iterator[list[tuple[str, float]]]:
    """Where a test notes each fault as (what, monotonic time); printed at the end for the log."""
    faults: list[tuple[str, float]] = []
    yield faults
    if faults:
        start = faults[0][1]
        print("faults:", ", ".join(f"{what} at +{at - start:.1f}s" for what, at in faults))

