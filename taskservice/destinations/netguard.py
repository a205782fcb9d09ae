"""The SSRF guard for webhook destinations: which URLs and addresses a webhook may reach.

A webhook URI comes from whoever registers a function, so the relay must not become a way to reach the machines
behind it: loopback services, the cloud metadata endpoint (169.254.169.254), private networks. The guard

1. parses the URL strictly (`parse_webhook_url`): scheme http or https, a host, no userinfo;
2. resolves the host with `socket.getaddrinfo` and vets *every* address (`resolve_target`): one forbidden address
   refuses the whole target, because the client could connect to any of them;
3. hands back the vetted addresses, so that the caller connects to exactly those (see
   `taskservice.destinations.webhook`), never to a second, possibly different, DNS answer.

An operator can allow internal targets with an `AddressAllowList` (setting TASKSERVICE_WEBHOOK_ALLOW): CIDRs and/or
exact host names, comma-separated, e.g. ``"127.0.0.1/32,10.20.0.0/16,hooks.internal"``. An allowed host name allows
every address it resolves to; an allowed network allows the addresses inside it, whatever name led there.
"""
from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from taskservice.destinations.base import DeliveryError
from taskservice.errors import ConfigError

ALLOW_SETTING = "TASKSERVICE_WEBHOOK_ALLOW"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class WebhookRefused(DeliveryError):
    """The webhook target is not allowed (a forbidden address) or not usable (a malformed URL)."""

    code = "WebhookRefused"


class InvalidWebhookURL(WebhookRefused):
    """The URI itself is unusable; no retry will fix it, so it is permanent."""

    code = "InvalidWebhookURL"

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message, permanent=permanent)


# --- address classification ------------------------------------------------------------------------------------
def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Order matters: the first matching row names the address (255.255.255.255 is "broadcast", not "reserved").
_V4_FORBIDDEN: tuple[tuple[tuple[IPNetwork, ...], str], ...] = (
    (_nets("169.254.169.254/32"), "a link-local address (the cloud metadata service)"),
    (_nets("0.0.0.0/8"), "an unspecified address"),
    (_nets("127.0.0.0/8"), "a loopback address"),
    (_nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "a private address"),
    (_nets("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_nets("169.254.0.0/16"), "a link-local address"),
    (_nets("224.0.0.0/4"), "a multicast address"),
    (_nets("255.255.255.255/32"), "a broadcast address"),
    (_nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"), "a documentation address"),
    (_nets("198.18.0.0/15"), "a benchmarking address"),
    (_nets("192.0.0.0/24", "192.88.99.0/24", "240.0.0.0/4"), "a reserved address"),
)

_V6_FORBIDDEN: tuple[tuple[tuple[IPNetwork, ...], str], ...] = (
    (_nets("::/128"), "an unspecified address"),
    (_nets("::1/128"), "a loopback address"),
    (_nets("fe80::/10"), "a link-local address"),
    (_nets("fc00::/7", "fec0::/10", "64:ff9b:1::/48"), "a private address"),
    (_nets("ff00::/8"), "a multicast address"),
    (_nets("2001:db8::/32", "3fff::/20"), "a documentation address"),
    (_nets("2001:2::/48"), "a benchmarking address"),
)

_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64 well-known prefix, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address in _V4_MAPPED:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why a webhook must not connect to `address` ("a loopback address", …), or None for a public address.

    IPv6 forms that embed an IPv4 address (::ffff:127.0.0.1, 64:ff9b::a9fe:a9fe, 2002:7f00:1::) are judged by the
    IPv4 address they reach. Anything that is not ordinary public unicast is refused, including ranges newer than the
    running Python's `ipaddress` tables.
    """
    if isinstance(address, ipaddress.IPv6Address):
        v4 = embedded_ipv4(address)
        if v4 is not None:
            inner = forbidden_reason(v4)
            if inner is None:
                return None
            kind = "IPv4-mapped" if address in _V4_MAPPED else "IPv4-embedding"
            return f"{inner} ({kind} {v4})"
        if address.scope_id:
            address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
        table = _V6_FORBIDDEN
    else:
        table = _V4_FORBIDDEN
    for networks, reason in table:
        if any(address in net for net in networks):
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address not in _V6_GLOBAL_UNICAST:
        return "a reserved address"
    if not address.is_global:
        return "a special-purpose (non-public) address"
    return None


# --- allow-list --------------------------------------------------------------------------------------------------
def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _is_hostname(text: str) -> bool:
    labels = text.split(".")
    return 0 < len(text) <= 253 and all(_LABEL.match(label) for label in labels)


@dataclass(frozen=True)
class AddressAllowList:
    """Networks and exact host names a webhook may reach even though they are private, loopback or link-local."""

    networks: tuple[IPNetwork, ...] = ()
    hostnames: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> AddressAllowList:
        """Parse ``"127.0.0.1/32, 10.0.0.0/8, ::1, hooks.internal"``; empty or None allows nothing.

        Entries are separated by commas (and/or whitespace). A bare address means that one address (/32 or /128).
        A network with host bits set (10.1.2.3/8) is rejected rather than silently widened or narrowed."""
        networks: list[IPNetwork] = []
        hostnames: set[str] = set()
        for raw in re.split(r"[,\s]+", text or ""):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.replace("[", "").replace("]", ""), strict=True))
                continue
            except ValueError as exc:
                if "/" in entry or ":" in entry or re.fullmatch(r"[\d.]+", entry):
                    problem = f"{ALLOW_SETTING}: {entry!r} is not a valid address or network ({exc})"
                    raise ConfigError(problem) from exc
            name = _normalise_host(entry)
            if not _is_hostname(name):
                raise ConfigError(f"{ALLOW_SETTING}: {entry!r} is neither an address, a network (CIDR) nor a "
                                  "host name")
            hostnames.add(name)
        return cls(networks=tuple(networks), hostnames=frozenset(hostnames))

    def __bool__(self) -> bool:
        return bool(self.networks or self.hostnames)

    def allows_host(self, host: str) -> bool:
        return _normalise_host(host) in self.hostnames

    def allows_address(self, address: IPAddress) -> bool:
        """True if the address, or the IPv4 address an IPv4-mapped IPv6 address stands for, is in a network."""
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(a in net for a in candidates for net in self.networks if a.version == net.version)


# --- URLs and resolution -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookURL:
    """A parsed webhook URI. `display` (scheme://host[:port]) is what messages show: paths and query strings often
    carry tokens, so they never appear in errors or logs."""

    scheme: str
    host: str  # lower-case ASCII (IDNA), IPv6 without brackets
    port: int
    explicit_port: bool
    path_and_query: str

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The canonical URL to request (no fragment, no userinfo)."""
        return f"{self.scheme}://{self.netloc}{self.path_and_query}"

    @property
    def display(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def parse_webhook_url(uri: str) -> WebhookURL:
    """Parse and check a webhook URI; raises InvalidWebhookURL with the reason."""
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in uri):
        raise InvalidWebhookURL("invalid webhook URI: it contains whitespace, control characters or a backslash")
    try:
        parts: SplitResult = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookURL(f"invalid webhook URI: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidWebhookURL(f"invalid webhook URI: scheme must be http or https, not {parts.scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise InvalidWebhookURL("invalid webhook URI: credentials in the URL (user@host) are not supported")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise InvalidWebhookURL("invalid webhook URI: it has no host")
    host = _ascii_host(raw_host)
    path = parts.path or "/"
    path_and_query = f"{path}?{parts.query}" if parts.query else path
    return WebhookURL(scheme=scheme, host=host, port=port if port is not None else _DEFAULT_PORTS[scheme],
                      explicit_port=port is not None, path_and_query=path_and_query)


def _ascii_host(raw: str) -> str:
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(raw))
    try:
        host = raw.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError as exc:
        raise InvalidWebhookURL("invalid webhook URI: the host name is not valid") from exc
    if not _is_hostname(host):
        raise InvalidWebhookURL("invalid webhook URI: the host name is not valid")
    return host


@dataclass(frozen=True)
class VettedTarget:
    """A webhook URL and the addresses it may be reached at, in resolver order; connect to these and no others."""

    url: WebhookURL
    addresses: tuple[IPAddress, ...]


def _getaddrinfo(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in found:
            found.append(address)
    return found


def resolve_target(url: WebhookURL, allow: AddressAllowList) -> VettedTarget:
    """Resolve the host and vet every address; raises WebhookRefused (or a DeliveryError for DNS trouble)."""
    try:
        addresses = _getaddrinfo(url.host, url.port)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else "lookup failed"
        raise DeliveryError(f"webhook {url.display}: cannot resolve host {url.host}: {reason}") from exc
    if not addresses:
        raise DeliveryError(f"webhook {url.display}: host {url.host} has no IPv4 or IPv6 address")
    check_addresses(url.host, addresses, allow)
    return VettedTarget(url=url, addresses=tuple(addresses))


def check_addresses(host: str, addresses: Iterable[IPAddress], allow: AddressAllowList) -> None:
    """Raise WebhookRefused if any address is forbidden and neither it nor the host name is allow-listed."""
    if allow.allows_host(host):
        return
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None and not allow.allows_address(address):
            raise WebhookRefused(f"refused: webhook host {host} resolves to {address}, {reason}; "
                                 f"allow it with {ALLOW_SETTING}")
