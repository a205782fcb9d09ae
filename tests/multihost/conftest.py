"""Fixtures for several hosts on one machine: three network namespaces (api, w1, w2), each with a veth pair to the
host and a relay on the host side to the machine's Postgres and RabbitMQ, and the service processes inside them.
What they are built from lives in tests/multihost/hosts.py.

Everything is removed by fixture finalizers, also when the test fails. Leftovers of an earlier run of this test whose
pytest process is gone (it crashed or was killed) are removed first; nothing else is touched."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import requests

from tests import support
from tests.multihost import hosts
from tests.multihost.hosts import AMQP_PORT, API_PORT, MULTIHOST, PG_PORT, Cluster, Network, NsProcess

if TYPE_CHECKING:
    from tests.support import Backend
    from tests.tcp_relay import TcpRelay


@pytest.fixture
def network(tcp_relay: Callable[[], TcpRelay]) -> Iterator[Network]:
    hosts.require_netns()
    hosts.remove_leftovers()
    run_id = uuid.uuid4().hex[:6]
    subnet = hosts.free_subnet()
    me = psutil.Process()
    hosts.state_file(run_id).write_text(json.dumps({"pid": me.pid, "pid_created": me.create_time(),
                                                    "subnet": subnet}))
    relay = tcp_relay()
    try:
        built = hosts.build(run_id, subnet)
        for h in built.values():
            for port in (PG_PORT, AMQP_PORT):
                relay.forward(h.host_ip, port, "127.0.0.1", port)
        yield Network(run_id, subnet, built, relay)
    finally:
        relay.close()
        hosts.remove_run(run_id, subnet)


@pytest.fixture
def cluster(network: Network, new_backend: Callable[..., Backend], tmp_path: Path) -> Iterator[Cluster]:
    """API in ns api, a one-slot worker in each of ns w1 and ns w2, against a throwaway database and queue."""
    backend = new_backend("postgres")
    database = backend.settings.database_url.rsplit("/", 1)[1]
    shared = tmp_path / "shared"
    shared.mkdir()
    started: list[NsProcess] = []
    http = requests.Session()
    http.trust_env = False  # never through a proxy: the API is on our own veth
    try:
        def launch(role: str, args: list[str]) -> NsProcess:
            h = network.hosts[role]
            env = backend.env(**MULTIHOST, database_url=h.database_url(database), broker_url=h.broker_url())
            env["TS_TEST_HOST"] = role
            p = NsProcess.start(h, args, env, tmp_path / f"{role}.log")
            started.append(p)
            return p

        api = launch("api", ["api", "--host", "0.0.0.0", "--port", str(API_PORT), "--workers", "2"])
        workers = {role: launch(role, ["worker", "-c", "1", "--loglevel", "INFO", "--name", f"{role}@%h"])
                   for role in ("w1", "w2")}
        for w in workers.values():
            w.wait_for_log("reaper started", 60)
        c = Cluster(network, backend, shared, api, workers, http)

        def healthy() -> bool:
            api.died()
            with contextlib.suppress(requests.RequestException):
                return http.get(c.base + "/healthz", timeout=1).status_code == 200
            return False

        support.eventually(healthy, what="the API in ns api to answer /healthz", timeout_s=60,
                           describe=lambda: api.text()[-3000:])
        yield c
    finally:
        for p in started:
            p.stop()
        for h in network.hosts.values():  # whatever is still inside our namespaces was started by this test
            for pid in h.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        http.close()
