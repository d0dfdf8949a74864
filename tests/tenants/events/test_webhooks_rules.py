"""The pure rules of webhook delivery (no database): signing, backoff, destinations."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import pytest

from tenants.events import delivery as rules
from tests.support.purity import imported_modules


def test_the_rules_import_nothing_of_django_or_the_network():
    imported = imported_modules("tenants/events/delivery.py")
    assert not {m for m in imported if m.split(".")[0] in {"django", "celery", "requests"}}


def test_the_signature_covers_the_timestamp_and_the_body():
    body = b'{"id":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert rules.signature("k", 1700000000, body) == f"sha256={expected}"
    header = rules.signature("k", 1700000000, body)
    assert rules.verify("k", "1700000000", body, header, now=1700000100)
    assert not rules.verify("k", "1700000001", body, header, now=1700000100)  # other time
    assert not rules.verify("k", "1700000000", body + b" ", header, now=1700000100)
    assert not rules.verify("other", "1700000000", body, header, now=1700000100)
    assert not rules.verify("k", "1700000000", body, header, now=1700000000 + 301)  # replayed
    assert not rules.verify("k", "-1", body, header, now=0)
    sent = rules.headers(
        secret="k", timestamp=1700000000, body=body, kind="fault.opened", delivery_id=7, attempt=2
    )
    assert sent["X-Factory-Signature-256"] == header
    assert sent["X-Factory-Delivery"] == "7" and sent["X-Factory-Attempt"] == "2"
    assert sent["X-Factory-Event"] == "fault.opened"
    assert sent["X-Factory-Timestamp"] == "1700000000"


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    policy = rules.RetryPolicy(base=10, factor=6, cap=6 * 3600, jitter=0.2, max_attempts=5)
    middle = [policy.delay(n, rand=lambda: 0.5) for n in range(1, 8)]
    assert middle == [10, 60, 360, 2160, 12960, 21600, 21600]
    assert policy.delay(1, rand=lambda: 0.0) == pytest.approx(8)
    assert policy.delay(1, rand=lambda: 1.0) == pytest.approx(12)
    assert policy.delay(9, rand=lambda: 1.0) == 21600  # jitter never passes the cap
    assert not policy.gives_up(4) and policy.gives_up(5)
    assert rules.retry_after("120", cap=60) == 60
    assert rules.retry_after("Wed, 21 Oct 2026 07:28:00 GMT", cap=60) is None
    assert rules.retry_after(None, cap=60) is None


OPEN = rules.DestinationPolicy()


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("93.184.215.14", False),
        ("10.20.30.40", False),  # the customer's premises
        ("192.168.1.10", False),
        ("fd00::1", False),
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # loopback in IPv6 clothing
        ("169.254.169.254", True),  # cloud metadata
        ("fe80::1", True),
        ("0.0.0.0", True),
        ("0.1.2.3", True),  # "this network": Linux connects it to the host itself
        ("2002:7f00:1::1", True),  # 6to4 carrying 127.0.0.1
        ("2002:a9fe:a9fe::1", True),  # 6to4 carrying 169.254.169.254
        ("2002:5db8:d70e::1", False),  # 6to4 carrying a public address
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", True),  # Teredo, its client 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("224.0.0.251", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
    ],
)
def test_the_default_destination_policy(address, refused):
    assert (rules.refused_address(ipaddress.ip_address(address), OPEN) is not None) is refused


def test_settings_tighten_or_loosen_the_policy():
    closed = rules.DestinationPolicy(
        allow_private=False, denied=rules.parse_networks(["198.51.100.0/24", " "])
    )
    assert rules.refused_address(ipaddress.ip_address("10.0.0.1"), closed)
    assert rules.refused_address(ipaddress.ip_address("100.64.0.1"), closed)  # CGNAT
    assert "denied network" in rules.refused_address(ipaddress.ip_address("198.51.100.7"), closed)
    assert rules.refused_address(ipaddress.ip_address("93.184.215.14"), closed) is None
    loopback = rules.DestinationPolicy(allow_loopback=True)
    assert rules.refused_address(ipaddress.ip_address("127.0.0.1"), loopback) is None
    assert rules.refused_address(ipaddress.ip_address("169.254.169.254"), loopback)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://hooks.example.com/x?token=1", None),
        ("http://10.0.0.5:8080/x", None),
        ("HTTPS://hooks.example.com/", None),
        ("ftp://hooks.example.com/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("https://a:b@hooks.example.com/", "credentials"),
        ("https://a@hooks.example.com/", "credentials"),
        ("https:///nohost", "invalid_url"),
        ("https://hooks.example.com:99999/", "invalid_url"),
        ("https://hooks.example.com:0/", "invalid_url"),
        ("http://localhost./", "destination_refused"),
        ("http://api.localhost/", "destination_refused"),
        ("http://[::ffff:169.254.169.254]/", "destination_refused"),
    ],
)
def test_urls(url, code):
    problem = rules.url_problem(url, OPEN)
    assert (problem[0] if problem else None) == code


def test_a_name_resolving_inward_is_refused_as_a_whole():
    public, inward = ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("127.0.0.1")
    assert rules.checked_addresses([public, public], OPEN) == ([public], None)
    allowed, reason = rules.checked_addresses([public, inward], OPEN)
    assert allowed == [] and "loopback" in reason
    assert rules.checked_addresses([], OPEN) == ([], "unresolved")


def test_the_control_planes_own_services_are_refused_even_with_loopback_allowed():
    """Its database on loopback (a test machine) is refused on its port only, on any loopback
    address; one on another host is refused on every port; its names are refused as written."""
    ip = ipaddress.ip_address
    policy = rules.DestinationPolicy(
        allow_loopback=True,
        own_names=frozenset({"postgres"}),
        own_addresses=frozenset({ip("10.0.0.5")}),
        own_endpoints=frozenset({(ip("127.0.0.1"), 5432), (ip("::1"), 5432)}),
    )
    assert "control plane" in rules.refused_address(ip("127.0.0.1"), policy, 5432)
    assert rules.refused_address(ip("127.0.0.2"), policy, 5432)  # the same service
    assert rules.refused_address(ip("::ffff:127.0.0.1"), policy, 5432)
    assert rules.refused_address(ip("127.0.0.1"), policy, 8080) is None  # a test receiver
    assert rules.refused_address(ip("10.0.0.5"), policy, 80)
    assert rules.refused_address(ip("2002:a00:5::1"), policy, 80)  # 6to4 of 10.0.0.5
    assert rules.checked_addresses([ip("10.0.0.5")], policy, 443) == ([], "own_service")
    assert rules.url_problem("http://127.0.0.1:5432/", policy)[0] == "destination_refused"
    assert rules.url_problem("http://[::1]:5432/", policy)[0] == "destination_refused"
    assert rules.url_problem("http://127.0.0.1:5433/", policy) is None
    assert rules.url_problem("https://POSTGRES./x", policy)[0] == "destination_refused"
    assert rules.url_problem("https://10.0.0.5/", policy)[0] == "destination_refused"
    assert rules.url_problem("https://hooks.example.com/", policy) is None


def test_a_failure_names_its_category_and_the_host_never_the_path():
    url = "https://hooks.slack.example:8443/services/T0/B0/SECRETTOKEN?sig=abc"
    text = rules.failure("refused", url)
    assert text == ("refused: the connection was refused (https://hooks.slack.example:8443/…)")
    assert "SECRETTOKEN" not in rules.failure("too_slow", url, "15 s")
    assert rules.failure("too_slow", url, "15 s").startswith("too_slow: ")
    assert rules.failure("no-such-category", url).startswith("no-such-category: the connection")
    assert "SECRETTOKEN" not in rules.redacted_url(url) and "sha256" in rules.redacted_url(url)
    assert rules.redacted_url(url) != rules.redacted_url(url.replace("abc", "abd"))
    assert rules.display_url("http://[::1/") == "…"


def test_the_connection_is_pinned_to_the_checked_address_and_keeps_the_host():
    url = "https://hooks.example.com:8443/in?x=1"
    assert rules.pinned_url(url, ipaddress.ip_address("2001:db8::1")) == (
        "https://[2001:db8::1]:8443/in?x=1"
    )
    assert rules.pinned_url("http://h.example/p", ipaddress.ip_address("10.0.0.1")) == (
        "http://10.0.0.1/p"
    )
    assert rules.host_header(url) == "hooks.example.com:8443"
    assert rules.host_header("http://[2001:db8::1]/") == "[2001:db8::1]"
    assert rules.display_url("https://hooks.example.com/secret-token/x") == (
        "https://hooks.example.com/…"
    )


def test_kinds():
    known = ["fault.opened", "fault.resolved"]
    assert rules.kinds_problem([], known) is None
    assert rules.kinds_problem(["fault.opened"], known) is None
    assert "unknown event kind 'x'" in rules.kinds_problem(["x"], known)
    assert rules.kinds_problem(["fault.opened"] * 2, known) == "each kind once"
    assert rules.kinds_problem("fault.opened", known)
