"""The connection the ledger's one-statement paths keep checked out (taskservice.db.StatementConnection), on a real
Postgres: reused while it is healthy, given up without an error when the server ended it, never shared by two
threads, never touched by a forked child, and invalidated by an outage inside a statement."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from taskservice.db import StatementConnection, make_engine
from tests import support


@pytest.fixture
def engine() -> Iterator[Engine]:
    url, drop = support.create_postgres_database("ts_stmt")
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop()


def _backend_pid(statements: StatementConnection) -> int:
    with statements.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        admin.commit()


def test_the_connection_is_reused_and_commits_each_statement(engine: Engine) -> None:
    statements = StatementConnection(engine)
    with statements.connect() as conn:
        conn.execute(text("CREATE TABLE t (n int)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    first = _backend_pid(statements)
    assert _backend_pid(statements) == first
    with engine.connect() as other:  # committed: another session sees the row
        assert other.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
    statements.close()


def _backend_alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                 {"pid": pid}).scalar_one())


def test_a_connection_the_server_ended_is_replaced_without_an_error(engine: Engine,
                                                                    eventually: Callable[..., Any]) -> None:
    statements = StatementConnection(engine)
    first = _backend_pid(statements)
    _terminate(engine, first)
    # The server's FATAL message and the close reach the client socket asynchronously: wait until they are there,
    # as they are long before the next statement of a worker or an API process after a restart.
    eventually(lambda: not _backend_alive(engine, first), what="the terminated backend to be gone")
    replaced = _backend_pid(statements)  # no OperationalError: the look at the socket saw it was closed
    assert replaced != first
    statements.close()


def test_an_outage_inside_a_statement_invalidates_the_connection(engine: Engine) -> None:
    statements = StatementConnection(engine)
    first = _backend_pid(statements)
    with pytest.raises(OperationalError), statements.connect() as conn:
        # The backend ends itself mid-statement: the driver's error is an outage, and the connection must go.
        conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    assert _backend_pid(statements) != first
    statements.close()


def test_a_second_thread_takes_its_own_connection_instead_of_waiting(engine: Engine) -> None:
    statements = StatementConnection(engine)
    inside, release = threading.Event(), threading.Event()
    pids: dict[str, int] = {}

    def hold() -> None:
        with statements.connect() as conn:
            pids["holder"] = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(30)
        pids["other"] = _backend_pid(statements)  # returns while the holder still has the kept connection
    finally:
        release.set()
        holder.join(30)
    assert pids["other"] != pids["holder"]
    assert _backend_pid(statements) == pids["holder"]  # the kept one is the holder's, given back
    statements.close()


def test_a_forked_child_never_uses_or_closes_the_parents_connection(engine: Engine) -> None:
    statements = StatementConnection(engine)
    parent = _backend_pid(statements)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its own connection, then exit without running the parent's cleanup
        try:
            engine.dispose(close=False)
            os.write(write, str(_backend_pid(statements)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        child_backend = int(answer.read())
    os.waitpid(child, 0)
    assert child_backend != parent
    assert _backend_pid(statements) == parent  # the parent's session survived the child
    statements.close()


def test_close_gives_the_connection_back(engine: Engine) -> None:
    statements = StatementConnection(engine)
    pid = _backend_pid(statements)
    statements.close()
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as admin:
        idle = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    assert idle is not None and idle[0] == "idle"  # back in the pool, not closed and not in use
