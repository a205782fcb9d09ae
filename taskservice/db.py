"""Engine creation and outage detection: the one place that knows how SQLite and Postgres differ in connection setup,
and which database errors mean "the ledger is unreachable right now" rather than "this statement is wrong"."""
from __future__ import annotations

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
