"""Several hosts on one machine, as the fixtures in tests/multihost/conftest.py build them: network namespaces with a
veth pair each to the host, a TCP relay on the host side to the machine's Postgres and RabbitMQ, and `taskservice`
processes inside the namespaces.

Everything is named ts-<run id>-…, uses only addresses of a 10.2xx.y.0/24 the run picked as unused. Leftovers of an
earlier run whose pytest process is gone (it crashed or was killed) are found and removed by `remove_leftovers()`;
nothing else is touched. Test modules import from here only for type annotations (under TYPE_CHECKING)."""
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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
import requests

from tests import support

if TYPE_CHECKING:
    from tests.support import Backend
    from tests.tcp_relay import TcpRelay

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


def require_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the multi-host tests build network namespaces: they need root and iproute2", pytrace=False)


def state_file(run_id: str) -> Path:
    return STATE_DIR / f"{run_id}.json"


def _owner_alive(state: dict[str, Any]) -> bool:
    try:
        return abs(psutil.Process(state["pid"]).create_time() - state["pid_created"]) < 0.01
    except (psutil.NoSuchProcess, KeyError):
        return False


def remove_run(run_id: str, subnet: str | None) -> None:
    """Delete one run's namespaces, veths and blackhole route; each step tolerates what is already gone."""
    for role in HOST_NAMES:
        ip("link", "del", _veth(run_id, role, "h"), check=False)
        ip("netns", "del", f"{PREFIX}{run_id}-{role}", check=False)
    if subnet:
        ip("route", "del", "blackhole", subnet, check=False)
    state_file(run_id).unlink(missing_ok=True)


def remove_leftovers() -> None:
    """Remove what an earlier run of this test left behind when its pytest died; live runs keep theirs."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    owned: dict[str, dict[str, Any]] = {}
    for path in STATE_DIR.glob("*.json"):
        with contextlib.suppress(ValueError, OSError):
            owned[path.stem] = json.loads(path.read_text())
    for run_id, state in owned.items():
        if not _owner_alive(state):
            _warn_about_stragglers(run_id)
            remove_run(run_id, state.get("subnet"))
    for line in ip("netns", "list").stdout.splitlines():
        match = NS_PATTERN.match(line.split()[0]) if line.strip() else None
        if match and match.group(1) not in owned:  # a namespace of this test with no owner at all
            remove_run(match.group(1), None)


def _warn_about_stragglers(run_id: str) -> None:
    """Processes of a dead run normally died with its pytest (PR_SET_PDEATHSIG); any still there are only named,
    not killed: after the namespace and its veth are gone they can reach nothing."""
    for role in HOST_NAMES:
        pids = ip("netns", "pids", f"{PREFIX}{run_id}-{role}", check=False).stdout.split()
        if pids:
            warnings.warn(f"leftover namespace {PREFIX}{run_id}-{role} still holds processes {pids}", stacklevel=2)


def _veth(run_id: str, role: str, side: str) -> str:
    return f"ts{run_id}{HOST_NAMES.index(role)}{side}"  # 10 characters; interface names stop at 15


def free_subnet() -> str:
    """A 10.2xx.y.0/24 that no address or route on this machine touches."""
    taken = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show", "table", "all").stdout
    for _ in range(200):
        prefix = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}."
        if prefix not in taken:
            return prefix + "0/24"
    raise RuntimeError("no free 10.2xx.y.0/24 found")


def build(run_id: str, subnet: str) -> dict[str, Host]:
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
        command = ["ip", "netns", "exec", host.netns, sys.executable, "-m", "taskservice.cli", *args]
        proc = subprocess.Popen(command, cwd=support.REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_pytest)
        return cls(host, args, log_path, proc, log)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, mark: str, timeout_s: float) -> None:
        support.eventually(lambda: self.proc.poll() is None and mark in self.text() or self.died(),
                           what=f"{self.args[0]} in {self.host.role} to log {mark!r}", timeout_s=timeout_s,
                           describe=lambda: self.text()[-3000:])

    def died(self) -> bool:
        """False while it runs; raises with its log once it has exited."""
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


# lease 10 s, heartbeat 1 s: self-fencing must kill a cut-off handler within lease_s - margin of its last heartbeat
MULTIHOST = {"lease_s": 10.0, "heartbeat_s": 1.0, "reaper_interval_s": 0.5, "drain_s": 2.0,
             "retry_base_s": 0.2, "retry_max_s": 1.0, "auth": False}


@dataclass
class Cluster:
    """The API in ns api and a one-slot worker in each of ns w1 and ns w2, all run with MULTIHOST's settings."""

    network: Network
    backend: Backend
    shared_dir: Path
    api: NsProcess
    workers: dict[str, NsProcess]
    http: requests.Session

    @property
    def lease_s(self) -> float:
        return float(MULTIHOST["lease_s"])

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
