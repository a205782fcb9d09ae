"""Webhook destinations against a real HTTP(S) receiver on 127.0.0.1: delivery, failures, and the SSRF guard.

Nothing is mocked: the receiver is a ThreadingHTTPServer in a thread, and it counts every TCP connection it accepts,
so "refused" means the relay never even connected.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from taskservice import __version__
from taskservice.destinations.base import DeliveryError
from taskservice.destinations.netguard import (
    ALLOW_SETTING,
    AddressAllowList,
    VettedTarget,
    WebhookRefused,
    parse_webhook_url,
)
from taskservice.destinations.webhook import PinnedAdapter, WebhookDestination

SECRET = "receiver-secret-7f3a9c-DO-NOT-LEAK"
SLOW_S = 3.0
LOCAL = AddressAllowList.parse("127.0.0.1/32")
NOTHING = AddressAllowList.parse("")


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    server: _Server
    scheme: str = "http"
    requests: list[Received] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)  # server names TLS clients sent

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def connections(self) -> int:
        return self.server.connections


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    receiver: Receiver

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Keep the receiver's per-request lines out of the test output."""

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout test)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.do_POST()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        self.server.receiver.requests.append(
            Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        secret = f"<html>{SECRET}</html>".encode()
        if path == "/ok":
            self._answer(200, b'{"ok": true, "echo": "' + SECRET.encode() + b'"}')
        elif path == "/accepted":
            self._answer(202)
        elif path == "/fail":
            self._answer(500, secret, {"Content-Type": "text/html", "X-Secret": SECRET})
        elif path == "/missing":
            self._answer(404, secret)
        elif path == "/slow":
            time.sleep(SLOW_S)
            self._answer(200)
        elif path == "/redirect-metadata":
            self._answer(302, secret, {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/redirect-self":
            self._answer(307, secret, {"Location": f"http://127.0.0.1:{self.server.server_address[1]}/landing"})
        else:
            self._answer(200)


def _start(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    receiver = Receiver(server, scheme="https" if tls else "http")
    server.receiver = receiver
    if tls is not None:

        def remember_sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
            receiver.sni.append(name)

        tls.sni_callback = remember_sni
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _start()


def record(request_id: str = "req-1", **extra: Any) -> dict[str, Any]:
    return {
        "timestamp": 1646826806389,
        "requestContext": {"requestId": request_id, "functionArn": "acs:fc:::functions/demo",
                           "condition": "", "approximateInvokeCount": 1},
        "requestPayload": json.dumps({"n": 1, "text": "héllo"}),
        "responseContext": {"statusCode": 200, "functionError": ""},
        "responsePayload": json.dumps({"result": 2}),
        **extra,
    }


def one(destination: WebhookDestination, rec: dict[str, Any] | None = None) -> DeliveryError | None:
    results = destination.deliver([rec or record()])
    assert len(results) == 1
    return results[0]


def assert_no_leak(error: DeliveryError, caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in str(error)
    assert SECRET not in error.message
    assert SECRET not in repr(error.details)
    assert SECRET not in caplog.text


# --- (a) delivery to an allow-listed receiver ----------------------------------------------------------------------
def test_records_arrive_as_json_with_request_id(receiver: Receiver) -> None:
    destination = WebhookDestination(receiver.url("/ok?token=abc"), allow=LOCAL)
    records = [record("req-1"), record("req-2"), record("req-3")]
    assert destination.deliver(records) == [None, None, None]
    destination.close()

    assert [r.method for r in receiver.requests] == ["POST"] * 3
    assert [r.path for r in receiver.requests] == ["/ok?token=abc"] * 3
    for sent, got in zip(records, receiver.requests, strict=True):
        assert json.loads(got.body) == sent
        assert got.headers["content-type"] == "application/json"
        assert got.headers["x-request-id"] == sent["requestContext"]["requestId"]
        assert got.headers["user-agent"] == f"taskservice-relay/{__version__}"
        assert got.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_any_2xx_is_success(receiver: Receiver) -> None:
    assert one(WebhookDestination(receiver.url("/accepted"), allow=LOCAL)) is None


def test_allow_listed_hostname_keeps_its_host_header(receiver: Receiver) -> None:
    destination = WebhookDestination(receiver.url("/ok", host="localhost"), allow=AddressAllowList.parse("localhost"))
    assert one(destination) is None
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"


def test_hostname_whose_address_is_allow_listed(receiver: Receiver) -> None:
    destination = WebhookDestination(receiver.url("/ok", host="localhost"), allow=LOCAL)
    assert one(destination) is None
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(("path", "status"), [("/fail", "500"), ("/missing", "404")])
def test_error_status_is_named_and_the_body_never_copied(
        receiver: Receiver, caplog: pytest.LogCaptureFixture, path: str, status: str) -> None:
    caplog.set_level(logging.DEBUG)
    error = one(WebhookDestination(receiver.url(path + "?token=tok-s3cr3t"), allow=LOCAL))
    assert isinstance(error, DeliveryError)
    assert error.message.startswith(f"webhook http://127.0.0.1:{receiver.port} answered {status}")
    assert_no_leak(error, caplog)
    assert "tok-s3cr3t" not in error.message  # the URL's query string can hold a token too
    assert len(receiver.requests) == 1


def test_slow_receiver_times_out_quickly(receiver: Receiver) -> None:
    destination = WebhookDestination(receiver.url("/slow"), allow=LOCAL, timeout_s=0.5)
    started = time.monotonic()
    error = one(destination)
    elapsed = time.monotonic() - started
    assert isinstance(error, DeliveryError)
    assert "timed out" in error.message
    assert "0.5s" in error.message
    assert elapsed < SLOW_S - 1.0


def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = one(WebhookDestination(f"http://127.0.0.1:{port}/", allow=LOCAL, timeout_s=2))
    assert isinstance(error, DeliveryError)
    assert "cannot connect" in error.message
    assert "refused" in error.message


# --- (b) the SSRF guard without an allow-list ------------------------------------------------------------------------
@pytest.mark.parametrize(("template", "reason"), [
    ("http://127.0.0.1:{port}/ok", "resolves to 127.0.0.1, a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "resolves to 169.254.169.254, a link-local address (the cloud "
                                                 "metadata service)"),
    ("http://localhost:{port}/ok", "webhook host localhost resolves to "),
    ("http://[::1]:{port}/ok", "resolves to ::1, a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/ok", "a loopback address (IPv4-mapped 127.0.0.1)"),
    ("http://2130706433:{port}/ok", "resolves to 127.0.0.1, a loopback address"),
    ("https://127.0.0.1:{port}/ok", "resolves to 127.0.0.1, a loopback address"),
])
def test_private_targets_are_refused_before_connecting(
        receiver: Receiver, caplog: pytest.LogCaptureFixture, template: str, reason: str) -> None:
    destination = WebhookDestination(template.format(port=receiver.port), allow=NOTHING)
    results = destination.deliver([record("a"), record("b")])
    assert len(results) == 2
    for error in results:
        assert isinstance(error, DeliveryError)
        assert error.message.startswith("refused: webhook host ")
        assert reason in error.message
        assert error.message.endswith(f"; allow it with {ALLOW_SETTING}")
    assert receiver.requests == []
    assert receiver.connections == 0


def test_allow_list_for_another_network_does_not_help(receiver: Receiver) -> None:
    destination = WebhookDestination(receiver.url("/ok"), allow=AddressAllowList.parse("10.0.0.0/8,hooks.internal"))
    error = one(destination)
    assert isinstance(error, DeliveryError) and "refused" in error.message
    assert receiver.connections == 0


# --- (c) redirects are not followed --------------------------------------------------------------------------------
def test_redirect_to_metadata_is_not_followed(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    error = one(WebhookDestination(receiver.url("/redirect-metadata"), allow=LOCAL))
    assert isinstance(error, DeliveryError)
    assert error.message == (f"webhook http://127.0.0.1:{receiver.port} answered 302; redirects are not followed "
                             "(point the destination at the final URL)")
    assert "169.254.169.254" not in error.message
    assert_no_leak(error, caplog)
    assert [r.path for r in receiver.requests] == ["/redirect-metadata"]


def test_redirect_even_to_an_allowed_address_is_not_followed(receiver: Receiver) -> None:
    error = one(WebhookDestination(receiver.url("/redirect-self"), allow=LOCAL))
    assert isinstance(error, DeliveryError)
    assert "answered 307; redirects are not followed" in error.message
    assert [r.path for r in receiver.requests] == ["/redirect-self"]  # nothing fetched from /landing


# --- DNS rebinding: the connection goes to the vetted address, never to a second lookup ---------------------------
def pinned_session(target: VettedTarget) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", PinnedAdapter(target))
    session.mount("https://", PinnedAdapter(target))
    return session


def test_pinned_adapter_connects_to_the_vetted_address(receiver: Receiver) -> None:
    # "rebind.invalid" cannot resolve at all, so the request can only arrive if nothing looks the name up again.
    url = parse_webhook_url(f"http://rebind.invalid:{receiver.port}/ok")
    with pinned_session(VettedTarget(url, (ipaddress.ip_address("127.0.0.1"),))) as session:
        response = session.post(url.url, json={"x": 1}, timeout=5, allow_redirects=False)
        response.close()
    assert response.status_code == 200
    assert receiver.requests[0].headers["host"] == f"rebind.invalid:{receiver.port}"


def test_pinned_adapter_tries_the_next_vetted_address_when_refused(receiver: Receiver) -> None:
    # The receiver listens on 127.0.0.1 only; 127.0.0.2 refuses the connection, so nothing was sent there.
    url = parse_webhook_url(f"http://rebind.invalid:{receiver.port}/ok")
    addresses = (ipaddress.ip_address("127.0.0.2"), ipaddress.ip_address("127.0.0.1"))
    with pinned_session(VettedTarget(url, addresses)) as session:
        response = session.post(url.url, json={"x": 1}, timeout=5, allow_redirects=False)
        response.close()
    assert response.status_code == 200
    assert len(receiver.requests) == 1
    assert receiver.connections == 1  # 127.0.0.2 never reached the receiver


def test_pinned_adapter_refuses_other_hosts(receiver: Receiver) -> None:
    url = parse_webhook_url(f"http://rebind.invalid:{receiver.port}/ok")
    with pinned_session(VettedTarget(url, (ipaddress.ip_address("127.0.0.1"),))) as session:
        for other in (f"http://elsewhere.invalid:{receiver.port}/ok", "http://rebind.invalid:1/",
                      f"https://rebind.invalid:{receiver.port}/ok"):
            with pytest.raises(WebhookRefused):
                session.post(other, json={}, timeout=5, allow_redirects=False)
    assert receiver.connections == 0


# --- TLS: pinned to the vetted IP, yet SNI and certificate checks use the host name --------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make a test certificate (apt-get install openssl)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_receiver(certificate: tuple[Path, Path]) -> Iterator[Receiver]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    yield from _start(context)


def trusting(cert: Path) -> requests.Session:
    session = requests.Session()
    session.verify = str(cert)
    return session


def test_https_verifies_the_host_name_while_pinned(tls_receiver: Receiver, certificate: tuple[Path, Path]) -> None:
    destination = WebhookDestination(tls_receiver.url("/ok", host="localhost"), allow=LOCAL,
                                     session_factory=lambda: trusting(certificate[0]))
    assert one(destination) is None
    assert tls_receiver.requests[0].headers["host"] == f"localhost:{tls_receiver.port}"
    assert tls_receiver.sni == ["localhost"]


def test_https_certificate_must_match(tls_receiver: Receiver, certificate: tuple[Path, Path]) -> None:
    # Same server, same trusted certificate, but addressed by IP: the certificate names only "localhost".
    destination = WebhookDestination(tls_receiver.url("/ok"), allow=LOCAL,
                                     session_factory=lambda: trusting(certificate[0]))
    error = one(destination)
    assert isinstance(error, DeliveryError)
    assert "TLS certificate verification failed" in error.message
    assert tls_receiver.requests == []


def test_https_untrusted_certificate_is_refused(tls_receiver: Receiver) -> None:
    error = one(WebhookDestination(tls_receiver.url("/ok", host="localhost"), allow=LOCAL))
    assert isinstance(error, DeliveryError)
    assert "TLS certificate verification failed" in error.message
    assert tls_receiver.requests == []
