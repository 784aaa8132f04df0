"""Who may use the server (stream/access.py): pure checks of a path and headers."""

from __future__ import annotations

import argparse

import pytest

from stream.cli.arg_types import flag_type
from stream.cli.settings import from_text, from_toml
from stream.exceptions import AccessSettingError
from stream.server.access import (
    Access,
    access_token,
    allowed_hosts,
    allowed_origins,
    exposure_warning,
    is_loopback_name,
    normal_origin,
    request_token,
)

TOKEN = "s3cret-token-of-24-chars"
LOCAL = {"Host": "127.0.0.1:8765"}


def _reason(access: Access, target: str, headers: dict[str, str]) -> str | None:
    refusal = access.refusal(target, headers)
    return None if refusal is None else f"{refusal.status.value} {refusal.reason}"


def test_without_a_token_every_request_addressed_to_the_server_is_answered() -> None:
    access = Access(loopback_only=True)
    for target in ("/", "/ws", "/metrics", "/frames/cam/1-0.jpg", "/healthz", "/nope"):
        assert access.refusal(target, LOCAL) is None, target


def test_a_token_is_needed_everywhere_but_healthz_and_is_never_echoed() -> None:
    access = Access(token=TOKEN)
    for target in ("/", "/ws", "/metrics", "/frames/cam/1-0.jpg", "/nope"):
        assert _reason(access, target, LOCAL) == "401 token", target
    assert access.refusal("/healthz", LOCAL) is None
    assert access.refusal("/ws", {**LOCAL, "Authorization": f"Bearer {TOKEN}"}) is None
    assert access.refusal("/ws", {**LOCAL, "Authorization": f"bearer  {TOKEN} "}) is None
    assert access.refusal(f"/ws?token={TOKEN}", LOCAL) is None
    assert access.refusal(f"/?source=cam&token={TOKEN}&history=0", LOCAL) is None
    missing = access.refusal("/metrics", LOCAL)
    wrong = access.refusal("/ws", {**LOCAL, "Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert missing is not None and "needs its access token" in missing.message
    assert wrong is not None and "wrong access token" in wrong.message
    for refusal in (missing, wrong):
        assert TOKEN not in refusal.message and TOKEN[:-1] not in refusal.message
    # a token in another scheme, or an empty one, is no token
    assert _reason(access, "/ws", {**LOCAL, "Authorization": f"Basic {TOKEN}"}) == "401 token"
    assert _reason(access, "/ws?token=", LOCAL) == "401 token"


def test_request_token_prefers_the_header() -> None:
    assert request_token("/ws?token=b", {"Authorization": "Bearer a"}) == "a"
    assert request_token("/ws?token=b", {}) == "b"
    assert request_token("/ws?token=a%2Bb", {}) == "a+b"  # URL-encoded, as the viewer sends
    assert request_token("/ws", {"Authorization": "Bearer "}) is None


def test_a_websocket_from_another_sites_page_is_refused() -> None:
    access = Access()
    ws = {"Host": "cams.example.com:8765"}
    assert access.refusal("/ws", ws) is None  # no Origin: not a browser
    assert access.refusal("/ws", {**ws, "Origin": "http://cams.example.com:8765"}) is None
    assert access.refusal("/ws", {**ws, "Origin": "HTTP://Cams.Example.com:8765"}) is None
    refusal = access.refusal("/ws", {**ws, "Origin": "https://evil.example"})
    assert refusal is not None and (refusal.status.value, refusal.reason) == (403, "origin")
    assert "https://evil.example" in refusal.message and "--allow-origin" in refusal.message
    assert _reason(access, "/ws", {**ws, "Origin": "null"}) == "403 origin"  # file:// pages
    # same host, another port or scheme: another origin
    assert _reason(access, "/ws", {**ws, "Origin": "http://cams.example.com"}) == "403 origin"
    # default ports: Host "x" and Origin "http://x:80" are the same origin
    assert access.refusal("/ws", {"Host": "x", "Origin": "http://x:80"}) is None
    assert access.refusal("/ws", {"Host": "x:443", "Origin": "https://x"}) is None
    # plain HTTP requests carry no Origin check: browsers keep other sites from reading them
    assert access.refusal("/metrics", {**ws, "Origin": "https://evil.example"}) is None


def test_behind_a_reverse_proxy_the_forwarded_host_is_this_server() -> None:
    headers = {
        "Host": "127.0.0.1:8765",
        "X-Forwarded-Host": "cams.example.com, proxy.internal",
        "Origin": "https://cams.example.com",
    }
    assert Access().refusal("/ws", headers) is None
    assert _reason(Access(), "/ws", {**headers, "Origin": "https://evil.example"}) == "403 origin"


def test_allowed_origins_may_open_the_websocket() -> None:
    access = Access(origins=allowed_origins("https://dash.example.com, http://localhost:3000"))
    headers = {"Host": "cams:8765"}
    assert access.refusal("/ws", {**headers, "Origin": "https://dash.example.com"}) is None
    assert access.refusal("/ws", {**headers, "Origin": "https://dash.example.com:443"}) is None
    assert access.refusal("/ws", {**headers, "Origin": "http://localhost:3000"}) is None
    assert _reason(access, "/ws", {**headers, "Origin": "http://localhost:3001"}) == "403 origin"
    anyone = Access(origins=allowed_origins("*"))
    assert anyone.refusal("/ws", {**headers, "Origin": "null"}) is None


def test_a_loopback_server_answers_only_requests_addressed_to_loopback_names() -> None:
    access = Access(loopback_only=True)
    for host in ("127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "cams.localhost"):
        assert access.refusal("/metrics", {"Host": host}) is None, host
    refusal = access.refusal("/frames/cam/1-0.jpg", {"Host": "rebound.evil.example:8765"})
    assert refusal is not None and (refusal.status.value, refusal.reason) == (403, "host")
    assert "DNS rebinding" in refusal.message and "rebound.evil.example" in refusal.message
    assert _reason(access, "/ws", {}) == "403 host"  # HTTP/1.1 requests carry a Host
    assert access.refusal("/healthz", {"Host": "anything"}) is None
    # a server listening beyond the machine serves whatever name it is reached by
    assert Access().refusal("/metrics", {"Host": "cams.example.com"}) is None


def test_loopback_names() -> None:
    yes = ("localhost", "a.localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost.")
    no = (
        "0.0.0.0",
        "::",
        "",
        "10.0.0.1",
        "example.com",
        "localhost.example.com",
        "127.0.0.1.nip.io",
    )
    assert all(is_loopback_name(n) for n in yes)
    assert not any(is_loopback_name(n) for n in no)


def test_origins_are_normalised_or_refused() -> None:
    assert normal_origin("HTTPS://Dash.Example.com:443") == "https://dash.example.com"
    assert normal_origin("http://[::1]:3000/") == "http://[::1]:3000"
    for bad in (
        "null",
        "dash.example.com",
        "ftp://x",
        "https://x/path",
        "https://u@x",
        "https://x:99999",
    ):
        assert normal_origin(bad) is None, bad
    assert allowed_origins("https://a.example,http://b.example:8080") == (
        "https://a.example",
        "http://b.example:8080",
    )
    for bad in ("https://a.example/app", "*.example.com", "", " , "):
        with pytest.raises(AccessSettingError):
            allowed_origins(bad)


def test_a_token_is_long_printable_and_its_errors_never_show_it() -> None:
    assert access_token(TOKEN) == TOKEN
    for bad in ("short-secret", "sixteen chars!!!", "sixteen-chars-é!", "tab\tseparated-secret"):
        with pytest.raises(AccessSettingError) as info:
            access_token(bad)
        assert bad not in str(info.value) and "secrets.token_urlsafe" in str(info.value)


def test_a_bad_token_setting_is_reported_without_its_value() -> None:
    parser = argparse.ArgumentParser()
    action = parser.add_argument("--token", type=flag_type(access_token))
    with pytest.raises(Exception) as info:
        from_text(action, "hunter2", "SCENECAST_TOKEN")
    assert "SCENECAST_TOKEN=<hidden>" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(Exception) as info:
        from_toml(action, 12345, "scenecast.toml: token")
    assert "<hidden>" in str(info.value) and "12345" not in str(info.value)
    assert from_text(action, TOKEN, "SCENECAST_TOKEN") == TOKEN


def test_an_open_server_beyond_this_machine_is_warned_about() -> None:
    warning = exposure_warning("0.0.0.0", None)
    assert warning is not None and "SCENECAST_TOKEN" in warning and "anyone" in warning
    assert exposure_warning("", None) is not None  # every interface
    assert exposure_warning("0.0.0.0", TOKEN) is None
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("localhost", None) is None


def test_a_loopback_server_behind_a_proxy_answers_to_the_names_it_is_given() -> None:
    access = Access(loopback_only=True, hosts=allowed_hosts("Cams.Example.com, other.example."))
    assert access.refusal("/ws", {"Host": "cams.example.com"}) is None
    assert access.refusal("/ws", {"Host": "CAMS.EXAMPLE.COM:443"}) is None
    assert access.refusal("/ws", {"Host": "other.example"}) is None
    assert _reason(access, "/ws", {"Host": "evil.example"}) == "403 host"
    # a page may set X-Forwarded-Host itself: it never stands in for the Host
    forged = {"Host": "evil.example", "X-Forwarded-Host": "cams.example.com"}
    assert _reason(access, "/metrics", forged) == "403 host"
    refusal = Access(loopback_only=True).refusal("/", {"Host": "cams.example.com"})
    assert refusal is not None and "--allow-host" in refusal.message
    for bad in ("https://cams.example.com", "cams.example.com:443", "*.example.com", "", "a b"):
        with pytest.raises(AccessSettingError):
            allowed_hosts(bad)
