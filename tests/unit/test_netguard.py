"""The webhook SSRF guard: address classification, allow-list parsing, URL parsing and resolution."""
from __future__ import annotations

import ipaddress

import pytest

from taskservice.destinations.base import DeliveryError
from taskservice.destinations.netguard import (
    ALLOW_SETTING,
    AddressAllowList,
    InvalidWebhookURL,
    WebhookRefused,
    check_addresses,
    embedded_ipv4,
    forbidden_reason,
    parse_webhook_url,
    resolve_target,
)
from taskservice.errors import ConfigError

ip = ipaddress.ip_address


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("192.0.2.1", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 form of 169.254.169.254
    ("2002:7f00:1::1", "loopback"),  # 6to4 form of 127.0.0.1
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
    ("100::1", "reserved"),  # discard-only prefix
])
def test_forbidden_addresses_are_named(address: str, reason: str) -> None:
    found = forbidden_reason(ip(address))
    assert found is not None, address
    assert reason in found


@pytest.mark.parametrize("address", [
    "93.184.216.34", "8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2606:4700:4700::1111",
    "::ffff:8.8.8.8", "64:ff9b::808:808",
])
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(ip(address)) is None


def test_ipv4_mapped_reason_says_which_ipv4_address() -> None:
    reason = forbidden_reason(ip("::ffff:127.0.0.1"))
    assert reason == "a loopback address (IPv4-mapped 127.0.0.1)"


def test_embedded_ipv4() -> None:
    assert embedded_ipv4(ip("::ffff:10.0.0.1")) == ip("10.0.0.1")
    assert embedded_ipv4(ip("64:ff9b::7f00:1")) == ip("127.0.0.1")
    assert embedded_ipv4(ip("2002:a9fe:a9fe::")) == ip("169.254.169.254")
    assert embedded_ipv4(ip("2606:4700::1")) is None
    assert embedded_ipv4(ip("127.0.0.1")) is None


# --- allow-list ------------------------------------------------------------------------------------------------------
def test_empty_allow_list_allows_nothing() -> None:
    for text in ("", None, " , ,"):
        allow = AddressAllowList.parse(text)
        assert not allow
        assert not allow.allows_address(ip("127.0.0.1"))
        assert not allow.allows_host("localhost")


def test_allow_list_parses_networks_addresses_and_hostnames() -> None:
    allow = AddressAllowList.parse("127.0.0.1/32, 10.20.0.0/16,hooks.internal ::1 [fd00::]/8 Hooks.Example.")
    assert allow.networks == (
        ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("::1/128"), ipaddress.ip_network("fd00::/8"),
    )
    assert allow.hostnames == frozenset({"hooks.internal", "hooks.example"})
    assert allow.allows_address(ip("127.0.0.1"))
    assert not allow.allows_address(ip("127.0.0.2"))
    assert allow.allows_address(ip("10.20.99.1"))
    assert not allow.allows_address(ip("10.21.0.1"))
    assert allow.allows_address(ip("::1"))
    assert allow.allows_address(ip("fd12::5"))
    assert allow.allows_host("HOOKS.internal.")
    assert not allow.allows_host("evil.hooks.internal")


def test_bare_address_means_exactly_that_address() -> None:
    allow = AddressAllowList.parse("127.0.0.1")
    assert allow.networks == (ipaddress.ip_network("127.0.0.1/32"),)


def test_allow_list_covers_ipv4_mapped_form() -> None:
    allow = AddressAllowList.parse("127.0.0.1/32")
    assert allow.allows_address(ip("::ffff:127.0.0.1"))
    assert not allow.allows_address(ip("::1"))


@pytest.mark.parametrize("text", ["10.0.0.1/8", "10.0.0.300", "127.0.0.1/33", "::g", "host:8080", "*.internal",
                                  "bad_host-.com", "a..b"])
def test_bad_allow_list_entries_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        AddressAllowList.parse(text)
    assert ALLOW_SETTING in str(info.value)


# --- check_addresses ------------------------------------------------------------------------------------------------
def test_any_forbidden_address_refuses_the_host() -> None:
    nothing = AddressAllowList.parse("")
    check_addresses("example.com", [ip("93.184.216.34")], nothing)
    with pytest.raises(WebhookRefused) as info:
        check_addresses("mixed.example", [ip("93.184.216.34"), ip("10.0.0.7")], nothing)
    message = info.value.message
    assert message == ("refused: webhook host mixed.example resolves to 10.0.0.7, a private address; "
                       f"allow it with {ALLOW_SETTING}")
    assert isinstance(info.value, DeliveryError)
    assert not info.value.permanent  # the allow-list or the DNS answer may change; the relay retries


def test_allowed_network_or_hostname_lets_it_through() -> None:
    check_addresses("hooks.internal", [ip("10.0.0.7")], AddressAllowList.parse("10.0.0.0/24"))
    check_addresses("hooks.internal", [ip("10.0.0.7"), ip("fd00::7")], AddressAllowList.parse("hooks.internal"))
    with pytest.raises(WebhookRefused, match="fd00::7, a private address"):
        check_addresses("hooks.internal", [ip("10.0.0.7"), ip("fd00::7")], AddressAllowList.parse("10.0.0.0/24"))
    with pytest.raises(WebhookRefused):
        check_addresses("other.internal", [ip("10.0.0.7")], AddressAllowList.parse("hooks.internal"))


# --- URLs ------------------------------------------------------------------------------------------------------------
def test_parse_webhook_url() -> None:
    url = parse_webhook_url("HTTPS://Hooks.Example.com/path/x?token=s3cr3t#frag")
    assert (url.scheme, url.host, url.port, url.explicit_port) == ("https", "hooks.example.com", 443, False)
    assert url.url == "https://hooks.example.com/path/x?token=s3cr3t"
    assert url.display == "https://hooks.example.com"
    assert url.host_header == "hooks.example.com"

    v6 = parse_webhook_url("http://[::1]:8080")
    assert (v6.host, v6.port, v6.path_and_query) == ("::1", 8080, "/")
    assert v6.host_header == "[::1]:8080"
    assert v6.display == "http://[::1]:8080"
    assert parse_webhook_url("http://example.com:80/").host_header == "example.com"
    assert parse_webhook_url("http://bücher.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize(("uri", "reason"), [
    ("ftp://example.com/", "scheme must be http or https"),
    ("file:///etc/passwd", "scheme must be http or https"),
    ("example.com/hook", "scheme must be http or https"),
    ("http://user:pw@example.com/", "credentials"),
    ("http://127.0.0.1\\@example.com/", "backslash"),
    ("http:///path", "no host"),
    ("http://example.com:99999/", "invalid webhook URI"),
    ("http://exa mple.com/", "whitespace"),
    ("http://-bad-.example/", "host name is not valid"),
])
def test_invalid_webhook_urls(uri: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookURL) as info:
        parse_webhook_url(uri)
    assert reason in info.value.message
    assert info.value.permanent  # no retry can fix the URI itself


# --- resolution (local names only: no network in tests) ------------------------------------------------------------
def test_hostname_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(WebhookRefused) as info:
        resolve_target(parse_webhook_url("http://localhost:8080/"), AddressAllowList.parse(""))
    assert info.value.message.startswith("refused: webhook host localhost resolves to ")
    assert "a loopback address" in info.value.message


def test_numeric_host_forms_are_resolved_before_the_check() -> None:
    for uri in ("http://2130706433/", "http://127.1/", "http://0x7f.0.0.1/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(WebhookRefused, match="loopback"):
            resolve_target(parse_webhook_url(uri), AddressAllowList.parse(""))


def test_allow_listed_hostname_resolves_to_vetted_addresses() -> None:
    target = resolve_target(parse_webhook_url("http://localhost:8080/"), AddressAllowList.parse("localhost"))
    assert target.addresses
    assert all(forbidden_reason(a) for a in target.addresses)  # loopback, but explicitly allowed


def test_unresolvable_host_is_a_delivery_error() -> None:
    with pytest.raises(DeliveryError, match="cannot resolve host no-such-host.invalid"):
        resolve_target(parse_webhook_url("https://no-such-host.invalid/x?token=s3cr3t"), AddressAllowList.parse(""))
