"""Fixtures for several hosts on one machine: three network namespaces (api, w1, w2), each with a veth pair to the
host and a relay on the host side to the machine's Postgres and RabbitMQ, and the service processes inside them.

Everything is named ts-<run id>-…, uses only addresses of a 10.2xx.y.0/24 the run picked as unused, and is removed
by fixture finalizers, also when the test fails. Leftovers of an earlier run of this test whose pytest process is
gone (it crashed or was killed) are removed first; nothing else is touched."""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.conftest import REPO, Backend, migrated, postgres_backend
from tests.multihost.tcp_relay import TcpRelay

PREFIX = "ts-"
NS_PATTERN = re.compile(r"^ts-([0-9a-f]{6})-(api|w1|w2)$")
STATE_DIR = Path("/run/taskservice-multihost")  # one file per live run: who owns which names and addresses
HOST_NAMES = ("api", "w1", "w2")
PG_PORT, AMQP_PORT, API_PORT = 5432, 5672, 8000
_PR_SET_PDEATHSIG = 1


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def eventually(what: str, probe: Callable[[], Any], timeout_s: float, interval_s: float = 0.1,
               describe: Callable[[], str] | None = None) -> Any:
    """Poll probe() until it returns something truthy; fail with `what` (and describe()) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = "" if describe is None else f"\n{describe()}"
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(interval_s)


@dataclass
class Host:
    """One 'machine': a network namespace whose only way out is its veth to the host."""

    role: str
    netns: str
    veth_host: str
    veth_ns: str
    host_ip: str  # the host's side of the veth, where the relay listens
    ns_ip: str

    def cut(self) -> None:
        """Pull the cable: from now on packets to and from this host vanish (no RST, no ICMP)."""
        ip("link", "set", self.veth_host, "down")

    def restore(self) -> None:
        ip("link", "set", self.veth_host, "up")

    def pids(self) -> list[int]:
        out = ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def database_url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host_ip}:{PG_PORT}/{database}"

    def broker_url(self) -> str:
        return f"amqp://guest:guest@{self.host_ip}:{AMQP_PORT}//"


@dataclass
class Network:
    run_id: str
    subnet: str
    hosts: dict[str, Host]
    relay: TcpRelay

    def relay_connections(self, role: str) -> int:
        """How many connections the relay accepted from this host so far (a reconnect shows as a new one)."""
        h = self.hosts[role].host_ip
        return sum(n for (addr, _), n in self.relay.accepted.items() if addr == h)


def _require_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the multi-host tests build network namespaces: they need root and iproute2", pytrace=False)


def _state_file(run_id: str) -> Path:
    return STATE_DIR / f"{run_id}.json"


def _owner_alive(state: dict[str, Any]) -> bool:
    try:
        return abs(psutil.Process(state["pid"]).create_time() - state["pid_created"]) < 0.01
    except (psutil.NoSuchProcess, KeyError):
        return False


def _remove_run(run_id: str, subnet: str | None) -> None:
    """Delete one run's namespaces, veths and blackhole route; each step tolerates what is already gone."""
    for role in HOST_NAMES:
        ip("link", "del", _veth(run_id, role, "h"), check=False)
        ip("netns", "del", f"{PREFIX}{run_id}-{role}", check=False)
    if subnet:
        ip("route", "del", "blackhole", subnet, check=False)
    _state_file(run_id).unlink(missing_ok=True)


def _remove_leftovers() -> None:
    """Remove what an earlier run of this test left behind when its pytest died; live runs keep theirs."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    owned: dict[str, dict[str, Any]] = {}
    for path in STATE_DIR.glob("*.json"):
        with contextlib.suppress(ValueError, OSError):
            owned[path.stem] = json.loads(path.read_text())
    for run_id, state in owned.items():
        if not _owner_alive(state):
            _warn_about_stragglers(run_id)
            _remove_run(run_id, state.get("subnet"))
    for line in ip("netns", "list").stdout.splitlines():
        match = NS_PATTERN.match(line.split()[0]) if line.strip() else None
        if match and match.group(1) not in owned:  # a namespace of this test with no owner at all
            _remove_run(match.group(1), None)


def _warn_about_stragglers(run_id: str) -> None:
    """Processes of a dead run normally died with its pytest (PR_SET_PDEATHSIG); any still there are only named,
    not killed: after the namespace and its veth are gone they can reach nothing."""
    for role in HOST_NAMES:
        pids = ip("netns", "pids", f"{PREFIX}{run_id}-{role}", check=False).stdout.split()
        if pids:
            warnings.warn(f"leftover namespace {PREFIX}{run_id}-{role} still holds processes {pids}", stacklevel=2)


def _veth(run_id: str, role: str, side: str) -> str:
    return f"ts{run_id}{HOST_NAMES.index(role)}{side}"  # 10 characters; interface names stop at 15


def _free_subnet() -> str:
    """A 10.2xx.y.0/24 that no address or route on this machine touches."""
    taken = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show", "table", "all").stdout
    for _ in range(200):
        prefix = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}."
        if prefix not in taken:
            return prefix + "0/24"
    raise RuntimeError("no free 10.2xx.y.0/24 found")


def _build(run_id: str, subnet: str) -> dict[str, Host]:
    base = subnet.rsplit(".", 1)[0]
    # Packets for our addresses must never fall through to the default route while a veth is down.
    ip("route", "add", "blackhole", subnet)
    hosts: dict[str, Host] = {}
    for n, role in enumerate(HOST_NAMES):
        h = Host(role, f"{PREFIX}{run_id}-{role}", _veth(run_id, role, "h"), _veth(run_id, role, "n"),
                 f"{base}.{4 * n + 1}", f"{base}.{4 * n + 2}")
        ip("netns", "add", h.netns)
        hosts[role] = h
        ip("link", "add", h.veth_host, "type", "veth", "peer", "name", h.veth_ns, "netns", h.netns)
        ip("addr", "add", f"{h.host_ip}/30", "dev", h.veth_host)
        ip("link", "set", h.veth_host, "up")
        ip("-n", h.netns, "addr", "add", f"{h.ns_ip}/30", "dev", h.veth_ns)
        ip("-n", h.netns, "link", "set", h.veth_ns, "up")
        ip("-n", h.netns, "link", "set", "lo", "up")
    return hosts


@pytest.fixture
def network() -> Iterator[Network]:
    _require_netns()
    _remove_leftovers()
    run_id = uuid.uuid4().hex[:6]
    subnet = _free_subnet()
    me = psutil.Process()
    _state_file(run_id).write_text(json.dumps({"pid": me.pid, "pid_created": me.create_time(), "subnet": subnet}))
    relay = TcpRelay()
    try:
        hosts = _build(run_id, subnet)
        for h in hosts.values():
            for port in (PG_PORT, AMQP_PORT):
                relay.forward(h.host_ip, port, "127.0.0.1", port)
        yield Network(run_id, subnet, hosts, relay)
    finally:
        relay.close()
        _remove_run(run_id, subnet)


def _die_with_pytest() -> None:
    """preexec_fn: if pytest itself is killed, the processes it started in the namespaces get SIGQUIT (Celery and
    gunicorn: cold shutdown, now; a warm one would wait for the long handler)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


@dataclass
class NsProcess:
    """`taskservice <command>` inside one namespace, in its own session, logging to a file."""

    host: Host
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    log: Any = field(repr=False)

    @classmethod
    def start(cls, host: Host, args: list[str], env: dict[str, str], log_path: Path) -> NsProcess:
        log = open(log_path, "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", host.netns, sys.executable, "-m", "taskservice.cli", *args],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_pytest)
        return cls(host, args, log_path, proc, log)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, mark: str, timeout_s: float) -> None:
        eventually(f"{self.args[0]} in {self.host.role} to log {mark!r}",
                   lambda: self.proc.poll() is None and mark in self.text() or self._died(), timeout_s,
                   describe=lambda: self.text()[-3000:])

    def _died(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.args[0]} in {self.host.role} exited {self.proc.returncode}:\n"
                               f"{self.text()[-3000:]}")
        return False

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM the main process (a Celery worker warm-shuts down), then SIGKILL the whole session."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


@dataclass
class Cluster:
    network: Network
    backend: Backend
    shared_dir: Path
    api: NsProcess
    workers: dict[str, NsProcess]
    http: requests.Session

    @property
    def base(self) -> str:
        return f"http://{self.network.hosts['api'].ns_ip}:{API_PORT}"

    def get(self, path: str) -> Any:
        response = self.http.get(self.base + path, timeout=5)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def put(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.put(self.base + path, json=body, timeout=5)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = self.http.post(self.base + path, json=body, timeout=5)
        assert response.status_code in (200, 202), (path, response.status_code, response.text)
        return response.json()

    def logs(self) -> str:
        parts = [f"--- {p.host.role}: {p.log_path}\n{p.text()[-4000:]}" for p in (self.api, *self.workers.values())]
        return "\n".join(parts)


# lease 10 s, heartbeat 1 s: self-fencing must kill a cut-off handler within lease_s - margin of its last heartbeat
MULTIHOST = {"lease_s": 10.0, "heartbeat_s": 1.0, "reaper_interval_s": 0.5, "drain_s": 2.0,
             "retry_base_s": 0.2, "retry_max_s": 1.0, "auth": False}


@pytest.fixture
def cluster(network: Network, tmp_path: Path) -> Iterator[Cluster]:
    """API in ns api, a one-slot worker in each of ns w1 and ns w2, against a throwaway database and queue."""
    backend_gen = migrated(postgres_backend(tmp_path / "data"))
    backend = next(backend_gen)
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
            api._died()
            with contextlib.suppress(requests.RequestException):
                return http.get(c.base + "/healthz", timeout=1).status_code == 200
            return False

        eventually("the API in ns api to answer /healthz", healthy, 60, describe=lambda: api.text()[-3000:])
        yield c
    finally:
        for p in started:
            p.stop()
        for h in network.hosts.values():  # whatever is still inside our namespaces was started by this test
            for pid in h.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        http.close()
        with contextlib.suppress(StopIteration):
            next(backend_gen)
