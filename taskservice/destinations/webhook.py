"""Webhook destinations (`https://…`, `http://…`): POST each record as JSON to an address the SSRF guard vetted.

What the relay gets back for each record is None (any 2xx) or a DeliveryError whose message names the webhook by
scheme://host[:port] only (paths and query strings often carry tokens) and the reason: the status code, "timed out",
"connection refused", a TLS verification failure, or a refusal by the guard. Response bodies are never read, so they
cannot end up in a log line or in the ledger; 3xx answers are failures because redirects are not followed (a redirect
is the classic way around an address check).

DNS rebinding. The guard (`netguard.resolve_target`) resolves the host once per batch and vets every address. If
requests then resolved the name again when connecting, a hostile DNS server could answer "public" to the check and
"127.0.0.1" to the connect. So the connection is pinned: `PinnedAdapter` is mounted for both schemes and, through the
`build_connection_pool_key_attributes` hook requests provides for subclasses, points urllib3's connection pool at the
vetted IP address instead of the host name. The host name is kept everywhere it matters for the peer:

* the Host header is set explicitly to ``host[:port]`` (urllib3 only adds its own when none is given);
* for https, ``server_hostname`` is the host name, so TLS sends it as SNI and the certificate is verified against the
  host name (not the IP) with the normal trust store — pinning does not weaken TLS;
* connection pools are keyed by (IP, port, server_hostname), so no connection is shared between names.

If the first vetted address refuses the connection (nothing was sent), the next vetted address is tried, as a normal
client would; a connect timeout is not retried, to keep the delivery bounded by `timeout_s`. Proxies (including the
environment's HTTP(S)_PROXY) are never used, since a proxy would resolve the name itself; `trust_env` is switched off
for the same reason. `session_factory` may still configure the session, e.g. ``session.verify = "/path/ca.pem"`` for an
internal CA.

`timeout_s` bounds the connect and each wait for the server (requests' semantics): a server that accepts the connection
but does not answer yields "no response within …s".
"""
from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from taskservice.destinations.base import DeliveryError
from taskservice.destinations.netguard import (
    AddressAllowList,
    IPAddress,
    VettedTarget,
    WebhookRefused,
    WebhookURL,
    parse_webhook_url,
    resolve_target,
)
from taskservice.version import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"taskservice-relay/{__version__}"


class PinnedAdapter(HTTPAdapter):
    """An HTTPAdapter that connects only to the vetted addresses of one webhook target (see the module docstring).

    Stateful while sending (it remembers which vetted address it is trying), so use one per thread; the webhook
    destination makes one per batch."""

    def __init__(self, target: VettedTarget) -> None:
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)
        self._target = target
        self._address: IPAddress = target.addresses[0]

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:  # (host params, pool kwargs); the stubs type them as private TypedDicts
        base_host, base_pool = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params: dict[str, Any] = dict(base_host)
        pool_kwargs: dict[str, Any] = dict(base_pool)
        url = self._target.url
        if not _same_origin(url, host_params):
            # Only reachable if something mounted this adapter for another URL; never connect anywhere unvetted.
            raise WebhookRefused(f"refused: request for a host other than the vetted webhook {url.display}")
        host_params["host"] = str(self._address)
        if url.scheme == "https":
            pool_kwargs["server_hostname"] = url.host
        return host_params, pool_kwargs

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        request.headers["Host"] = self._target.url.host_header
        last: requests.exceptions.ConnectionError | None = None
        for address in self._target.addresses:
            self._address = address
            try:
                # proxies=None: a proxy would resolve the host name itself and undo the pinning.
                return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)
            except requests.exceptions.ConnectionError as exc:
                if isinstance(exc, requests.exceptions.ConnectTimeout) or not _connect_failed(exc):
                    raise
                last = exc
        assert last is not None
        raise last


def _same_origin(url: WebhookURL, host_params: dict[str, Any]) -> bool:
    host = str(host_params.get("host") or "").strip("[]").rstrip(".").lower()
    try:
        same_host = ipaddress.ip_address(host) == ipaddress.ip_address(url.host)
    except ValueError:
        same_host = host == url.host
    port = host_params.get("port") or (443 if host_params.get("scheme") == "https" else 80)
    return same_host and host_params.get("scheme") == url.scheme and port == url.port


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (args, .reason, __cause__, __context__), depth-first, no repeats."""
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        linked = [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
        stack.extend(x for x in reversed(linked) if isinstance(x, BaseException))
    return seen


def _connect_failed(exc: BaseException) -> bool:
    """True when the TCP connection was never established, so nothing of the request was sent."""
    return any(isinstance(c, NewConnectionError) for c in _causes(exc))


def _reason(exc: requests.exceptions.RequestException, timeout_s: float) -> str:
    """A short, secret-free reason: never str(exc), which repeats the full URL."""
    causes = _causes(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"timed out connecting after {timeout_s:g}s"
    if isinstance(exc, requests.exceptions.Timeout) or any(isinstance(c, TimeoutError) for c in causes):
        return f"timed out: no response within {timeout_s:g}s"
    if isinstance(exc, requests.exceptions.SSLError):
        for cause in causes:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return f"TLS certificate verification failed: {cause.verify_message}"
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.ConnectionError):
        connect_failed = _connect_failed(exc)
        for cause in causes:
            if isinstance(cause, OSError) and cause.errno:
                name = errno.errorcode.get(cause.errno, str(cause.errno))
                what = "cannot connect" if connect_failed else "connection failed"
                return f"{what}: {os.strerror(cause.errno).lower()} ({name})"
        if connect_failed:
            return "cannot connect"
        return "the connection closed before a complete response"
    return f"request failed ({type(exc).__name__})"


def _status_text(status: int) -> str:
    try:
        return f"{status} ({HTTPStatus(status).phrase})"  # our own table, never the server's reason text
    except ValueError:
        return str(status)


class WebhookDestination:
    """`https://…` / `http://…`: POST each record as JSON; refuse private, loopback and link-local targets unless
    `allow` lists them; follow no redirects; never read or report response bodies.

    The constructor raises InvalidWebhookURL (a DeliveryError) for a URI that can never work (bad scheme, no host,
    credentials in the URL). Address checks happen at delivery time, for every batch, because DNS answers change."""

    def __init__(
        self,
        uri: str,
        *,
        allow: AddressAllowList,
        timeout_s: float = 10.0,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.uri = uri
        self.url = parse_webhook_url(uri)
        self.allow = allow
        self.timeout_s = timeout_s
        self._session_factory = session_factory

    def __repr__(self) -> str:
        return f"WebhookDestination({self.url.display!r})"

    def deliver(self, records: list[dict[str, Any]]) -> list[DeliveryError | None]:
        if not records:
            return []
        try:
            target = resolve_target(self.url, self.allow)
        except DeliveryError as exc:
            log.warning("webhook delivery of %d record(s) failed: %s", len(records), exc.message)
            return [type(exc)(exc.message, permanent=exc.permanent) for _ in records]
        session = self._session_factory()
        session.trust_env = False  # no proxies or .netrc credentials from the environment
        session.proxies.clear()
        adapter = PinnedAdapter(target)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            return [self._deliver_one(session, record) for record in records]
        finally:
            session.close()

    def _deliver_one(self, session: requests.Session, record: dict[str, Any]) -> DeliveryError | None:
        display = self.url.display
        try:
            body = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return DeliveryError(f"webhook {display}: the record is not JSON-serialisable ({type(exc).__name__})",
                                 permanent=True)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        context = record.get("requestContext")
        request_id = context.get("requestId") if isinstance(context, dict) else None
        if request_id is not None:
            headers["X-Request-Id"] = str(request_id)
        try:
            # stream=True: the body is never downloaded; closing the response drops the connection instead.
            response = session.post(self.url.url, data=body, headers=headers, timeout=self.timeout_s,
                                    allow_redirects=False, stream=True)
        except DeliveryError as exc:
            return exc
        except requests.exceptions.RequestException as exc:
            return DeliveryError(f"webhook {display}: {_reason(exc, self.timeout_s)}")
        try:
            status = response.status_code
        finally:
            response.close()
        if 200 <= status < 300:
            log.debug("webhook %s accepted record %s (%d)", display, request_id, status)
            return None
        if 300 <= status < 400:
            return DeliveryError(f"webhook {display} answered {status}; redirects are not followed "
                                 "(point the destination at the final URL)")
        return DeliveryError(f"webhook {display} answered {_status_text(status)}")

    def close(self) -> None:
        """Nothing to release: each batch uses its own session, closed when the batch is done."""
