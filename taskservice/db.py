"""Engine creation and outage detection: the one place that knows how SQLite and Postgres differ in connection setup,
and which database errors mean "the ledger is unreachable right now" rather than "this statement is wrong"."""
from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE so that several processes can write."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)  # the embedded ledger makes its own folder
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        _make_sqlite_multiprocess_safe(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True,
                         connect_args=_bounded_waits(url))


# A dead link (a host cut off, a server gone without a FIN) must fail a connection within seconds instead of the
# kernel's ~15 minutes of retransmissions: a worker that cannot tell "slow" from "gone" could not fence itself.
# The server side gets the same, plus a bound on a transaction whose client vanished between two statements: its row
# locks would otherwise stall the reaper that must hand the invocation to a new attempt.
POSTGRES_LINK_TIMEOUTS = {"connect_timeout": 5, "tcp_user_timeout": 8000, "keepalives": 1, "keepalives_idle": 5,
                          "keepalives_interval": 2, "keepalives_count": 2,
                          "options": "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=2 "
                                     "-c tcp_user_timeout=8000 -c idle_in_transaction_session_timeout=15000"}


def _bounded_waits(url: str) -> dict[str, Any]:
    """libpq timeouts for Postgres URLs, unless the URL sets its own."""
    if not url.startswith("postgresql"):
        return {}
    given = set(make_url(url).query)
    return {k: v for k, v in POSTGRES_LINK_TIMEOUTS.items() if k not in given}


def outside_a_transaction(engine: Engine) -> Connection:
    """A connection whose statements commit one by one (`with outside_a_transaction(engine) as conn:`): for a single
    statement that is atomic by itself, where BEGIN and COMMIT would be two more round trips (Postgres)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class StatementConnection:
    """One autocommit connection kept checked out, for the single statements of the hot paths (a claim, an outcome,
    a submission): a pool checkout with its pre-ping, and the return with its reset, cost more than the statement
    itself (about 0.4 ms of a 0.9 ms claim).

    The pre-ping is replaced by a look at the socket: an idle connection has nothing to read unless the server
    closed it (a restart, an admin's kill) or sent a notice, and either way it is given up for a fresh checkout,
    which pre-pings as before. One thread at a time holds it; another thread meanwhile takes an ordinary checkout
    instead of waiting. A statement that fails on it gives it up (an outage invalidates it): the caller's error
    handling and retries are those of an ordinary checkout.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._held: Connection | None = None
        self._pid = os.getpid()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        if not self._lock.acquire(blocking=False):
            with outside_a_transaction(self.engine) as conn:
                yield conn
            return
        try:
            conn = self._take()
            try:
                yield conn
            except BaseException as exc:
                self._give_up(invalidate=is_outage(exc))
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._give_up(invalidate=False)

    def _take(self) -> Connection:
        if self._pid != os.getpid():
            # A forked copy: the socket is the parent's. Never close it from here, nor let it be collected (a
            # collected connection is closed, which would end the parent's session): keep it, forgotten.
            _INHERITED.append(self._held)
            self._held, self._pid = None, os.getpid()
        held = self._held
        if held is not None and not _looks_alive(held):
            self._give_up(invalidate=True)
            held = None
        if held is None:
            held = self._held = outside_a_transaction(self.engine)
        return held

    def _give_up(self, *, invalidate: bool) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        with contextlib.suppress(Exception):  # a connection already broken: the pool has dropped it
            if invalidate:
                held.invalidate()
            held.close()


_INHERITED: list[Connection | None] = []


def _looks_alive(conn: Connection) -> bool:
    """False when the idle connection's socket is readable (the server closed it or wrote to it unasked) or its
    driver says it is closed. No round trip."""
    dbapi = conn.connection.dbapi_connection
    if dbapi is None or getattr(dbapi, "closed", False):
        return False
    pgconn = getattr(dbapi, "pgconn", None)
    if pgconn is None:  # SQLite: a file, always there
        return True
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except Exception:  # no socket any more (psycopg raises its own error): not alive
        return False
    return not readable


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or went away (restart, network cut, a lock wait the
    server gave up), so the caller should wait and try again rather than report a bug."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _make_sqlite_multiprocess_safe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so that "begin" below is the only BEGIN issued.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY without waiting for the busy
        # timeout; taking the write lock up front makes concurrent writers queue instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
