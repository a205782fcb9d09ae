"""Read-only SQL over the bench's own ledger database (plus the reset between phases).

The ledger's timestamps are the ground truth for the figures: `created_at` is stamped by the submitting process,
`started_at` by the claiming worker and `finished_at` by the worker that recorded the outcome, all on this machine's
clock, so the bench need not guess when the service did something.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class OutboxSummary:
    """Where one destination's outbox rows stand; times are the relay's own `delivered_at` stamps (epoch seconds).

    The relay stamps a whole batch with one `delivered_at`, so `first_batch` is the size of the first batch it sent.
    """

    delivered: int
    pending: int
    failed: int
    retried: int  # rows that needed more than one attempt
    first_delivered: float | None
    last_delivered: float | None
    first_batch: int
    avg_record_bytes: float


@dataclass(frozen=True)
class Window:
    """Epoch seconds of the first creation, first start and last finish in the ledger (None while missing)."""

    first_created: float | None
    first_started: float | None
    last_finished: float | None


class LedgerProbe:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._conn: psycopg.Connection | None = None

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _scalar(self, sql: str, *params: object) -> float:
        row = self._db().execute(sql, params).fetchone()
        return 0.0 if row is None or row[0] is None else float(row[0])

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self._scalar("SELECT count(*) FROM invocations"))
        return int(self._scalar("SELECT count(*) FROM invocations WHERE status = %s", status))

    def started_count(self) -> int:
        return int(self._scalar("SELECT count(*) FROM invocations WHERE started_at IS NOT NULL"))

    def reset(self) -> None:
        """Empty the invocations and every table hanging off them (CASCADE: history, logs, outbox) between phases.
        No RESTART IDENTITY: a stale doorbell for an old key must never point at a new invocation."""
        db = self._db()
        db.execute("SET lock_timeout = '10s'")
        db.execute("TRUNCATE invocations CASCADE")

    def window(self) -> Window:
        row = self._db().execute(
            "SELECT extract(epoch FROM min(created_at)), extract(epoch FROM min(started_at)),"
            " extract(epoch FROM max(finished_at)) FROM invocations").fetchone()
        assert row is not None
        return Window(*(None if value is None else float(value) for value in row))

    def latencies_ms(self, column: str) -> list[float]:
        """`column` − created_at in milliseconds for every invocation that has it ('started_at', 'finished_at')."""
        if column not in ("started_at", "finished_at"):
            raise ValueError(column)
        rows = self._db().execute(
            f"SELECT extract(epoch FROM {column} - created_at) * 1000 FROM invocations"
            f" WHERE {column} IS NOT NULL ORDER BY id").fetchall()
        return [float(value) for (value,) in rows]

    def rerung(self) -> int:
        """Invocations the reaper rang again while they waited (it moves dispatched_at forward when it does)."""
        return int(self._scalar("SELECT count(*) FROM invocations"
                                " WHERE dispatched_at > created_at + interval '1 second'"))

    def wait_until(self, predicate_sql: str, target: int, *, timeout_s: float, check: Callable[[], None],
                   poll_s: float = 0.05) -> int:
        """Poll `SELECT count(*) FROM invocations WHERE <predicate>` until it reaches `target` or time runs out;
        returns the last count. `check` runs on every poll and raises when the processes doing the work died."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = int(self._scalar(f"SELECT count(*) FROM invocations WHERE {predicate_sql}"))
            if done >= target or time.monotonic() >= deadline:
                return done
            check()
            time.sleep(poll_s)

    # --- the outbox (bench_relay.py) ------------------------------------------------------------------------------
    def outbox_pending(self, destination: str) -> int:
        return int(self._scalar("SELECT count(*) FROM destination_deliveries WHERE destination = %s"
                                " AND status = 'pending'", destination))

    def outbox_summary(self, destination: str, *, since: float | None = None) -> OutboxSummary:
        """`since` (epoch seconds) leaves out records delivered before it, such as a warm-up record."""
        scope = ("destination = %(d)s AND (delivered_at IS NULL OR delivered_at >= to_timestamp(%(since)s))"
                 if since is not None else "destination = %(d)s")
        params = {"d": destination, "since": since}
        row = self._db().execute(
            "SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'pending'),"
            " count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE attempts > 1),"
            " extract(epoch FROM min(delivered_at)), extract(epoch FROM max(delivered_at)),"
            f" coalesce(avg(octet_length(record)), 0) FROM destination_deliveries WHERE {scope}", params).fetchone()
        assert row is not None
        first = self._db().execute(f"SELECT count(*) FROM destination_deliveries WHERE {scope} AND delivered_at ="
                                   f" (SELECT min(delivered_at) FROM destination_deliveries WHERE {scope})",
                                   params).fetchone()
        return OutboxSummary(delivered=int(row[0]), pending=int(row[1]), failed=int(row[2]), retried=int(row[3]),
                             first_delivered=None if row[4] is None else float(row[4]),
                             last_delivered=None if row[5] is None else float(row[5]),
                             first_batch=0 if first is None else int(first[0]), avg_record_bytes=float(row[6]))

    def reset_outbox(self) -> None:
        """Empty the invocations, the outbox and the dead letters, so that each relay pass starts from the same
        ledger: the claim query's cost grows with the delivered rows it has to skip (see bench/README.md)."""
        self.reset()
        self._db().execute("TRUNCATE destination_deliveries, dead_letters")

    def outbox_records(self, destination: str) -> list[str]:
        """The stored record texts, oldest first: the bare publish loops send exactly these bodies."""
        rows = self._db().execute("SELECT record FROM destination_deliveries WHERE destination = %s ORDER BY id",
                                  (destination,)).fetchall()
        return [str(record) for (record,) in rows]

    def park_outbox(self, destination: str) -> int:
        """Make a destination's pending records due only in an hour, so a relay can be started and profiled before
        it has anything to do. Only the schedule changes; the records stay as the terminal transition wrote them."""
        return self._db().execute("UPDATE destination_deliveries SET next_attempt_at = now() + interval '1 hour'"
                                  " WHERE destination = %s AND status = 'pending'", (destination,)).rowcount

    def release_outbox(self, destination: str, limit: int | None = None) -> int:
        """Make parked records due now (the oldest `limit` of them, or all), in one statement: they appear to the
        relay at once."""
        return self._db().execute(
            "UPDATE destination_deliveries SET next_attempt_at = now() WHERE id IN (SELECT id FROM"
            " destination_deliveries WHERE destination = %s AND status = 'pending' ORDER BY id LIMIT %s)",
            (destination, limit)).rowcount

    def server_version(self) -> str:
        return str(self._db().execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def setting(self, name: str) -> str:
        return str(self._db().execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
