"""Which callback URLs are refused: internal addresses, judged without DNS at submit time
and on the resolved address at delivery."""

from __future__ import annotations

import pytest

from colsum.settings import Settings
from colsum.webhook_targets import Refused, refusal, resolve

DEFAULTS = Settings()
ADVICE = "; set WEBHOOK_ALLOW_PRIVATE=true or WEBHOOK_ALLOWED_HOSTS to allow it"


@pytest.mark.parametrize(
    ("url", "shown", "kind"),
    [
        ("http://127.0.0.1:6379/", "127.0.0.1", "a loopback address"),
        ("http://10.0.0.5/hook", "10.0.0.5", "a private address"),
        ("http://172.18.0.3:5000/moto-api/reset", "172.18.0.3", "a private address"),
        ("http://192.168.1.1/", "192.168.1.1", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a link-local address"),
        ("http://0.0.0.0:8000/", "0.0.0.0", "an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1", "a multicast address"),
        ("http://100.64.0.1/", "100.64.0.1", "a non-public address"),
        ("http://[::1]:8000/", "::1", "a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1", "a loopback address"),
        ("http://[::ffff:a00:5]/", "10.0.0.5", "a private address"),
        ("http://[fe80::1]/", "fe80::1", "a link-local address"),
        ("http://[fd00::1]/", "fd00::1", "a private address"),
        ("https://localhost/", "localhost", "a loopback address"),
        ("http://api.localhost:8000/", "api.localhost", "a loopback address"),
    ],
)
def test_an_internal_address_is_refused_at_submit_time(url: str, shown: str, kind: str):
    assert refusal(url, DEFAULTS) == f"refused: callback_url resolves to {shown}, {kind}{ADVICE}"


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/colsum?x=1",
        "http://93.184.216.34:8080/",
        "http://[2606:4700::1]/",
    ],
)
def test_a_public_address_or_any_host_name_passes_at_submit_time(url: str):
    assert refusal(url, DEFAULTS) is None


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://example.com/x", "refused: callback_url must be an http:// or https:// URL"),
        ("file:///etc/passwd", "refused: callback_url must be an http:// or https:// URL"),
        ("http:///nohost", "refused: callback_url has no host"),
        ("http://[::1/x", "refused: callback_url is not a valid URL (Invalid IPv6 URL)"),
        ("http://example.com:99999/", "refused: callback_url is not a valid URL"),
        ("http://example.com/a b", "refused: callback_url contains whitespace or control"),
        ("http://example.com/\r\nX-Injected: 1", "refused: callback_url contains whitespace"),
    ],
)
def test_a_url_colsum_cannot_post_to_is_refused(url: str, error: str):
    assert refusal(url, DEFAULTS).startswith(error)


def test_webhook_allow_private_allows_every_internal_address():
    allowing = Settings(webhook_allow_private=True)
    assert refusal("http://169.254.169.254/", allowing) is None
    assert resolve("http://localhost:8000/x", allowing).address in ("127.0.0.1", "::1")


def test_an_allowed_host_is_allowed_by_name_and_no_other():
    allowing = Settings(webhook_allowed_hosts=("receiver", "127.0.0.1"))
    assert refusal("http://Receiver:9000/", allowing) is None
    assert refusal("http://127.0.0.1:9000/", allowing) is None
    assert refusal("http://10.0.0.5/", allowing) is not None


def test_a_name_is_judged_by_the_address_it_resolves_to_when_delivering():
    with pytest.raises(Refused, match=r"resolves to (127\.0\.0\.1|::1), a loopback address"):
        resolve("http://localhost:8000/", DEFAULTS)


def test_the_resolved_target_keeps_the_name_for_host_and_tls():
    target = resolve("https://localhost:8443/hook?a=1", Settings(webhook_allow_private=True))
    assert (target.host, target.port, target.target) == ("localhost", 8443, "/hook?a=1")
    assert target.host_header == "localhost:8443"
    default_port = resolve("http://[::1]/", Settings(webhook_allow_private=True))
    assert (default_port.address, default_port.host_header) == ("::1", "[::1]")


def test_the_settings_read_a_host_list_and_a_strict_flag():
    settings = Settings.from_env(
        {"WEBHOOK_ALLOWED_HOSTS": " Receiver, 127.0.0.1 ,", "WEBHOOK_ALLOW_PRIVATE": "TRUE"}
    )
    assert settings.webhook_allowed_hosts == ("receiver", "127.0.0.1")
    assert settings.webhook_allow_private is True
    assert Settings.from_env({}).webhook_allow_private is False
    with pytest.raises(ValueError, match="WEBHOOK_ALLOW_PRIVATE must be true or false"):
        Settings.from_env({"WEBHOOK_ALLOW_PRIVATE": "maybe"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.1:9/", "127.0.0.1"),
        ("http://0x7f.1:9/", "127.0.0.1"),
        ("http://2130706433:9/", "127.0.0.1"),
        ("http://017700000001:9/", "127.0.0.1"),
        ("http://127.0.0.1.:9/", "127.0.0.1"),
        ("http://0:9/", "0.0.0.0"),
        ("http://10.1:9/", "10.0.0.1"),
    ],
)
def test_every_spelling_the_resolver_takes_is_judged_at_submit_time(url: str, shown: str):
    assert refusal(url, DEFAULTS).startswith(f"refused: callback_url resolves to {shown}, ")


def test_localhost_with_a_trailing_dot_is_refused_at_submit_time():
    assert refusal("http://localhost.:8000/", DEFAULTS).startswith(
        "refused: callback_url resolves to localhost."
    )
