"""The server over TLS (``--tls-cert``/``--tls-key``): real sockets, a real
redis-server, and a self-signed certificate made by the ``openssl`` command."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import redis
from websockets.asyncio.client import connect

from stream.exceptions import StreamError
from stream.server.server import CaptionServer, ServerConfig, banner
from stream.server.tls import server_tls_context
from tests.support.frames import publish_caption, register
from tests.support.servers import T, recv, run_server
from tests.support.tls import self_signed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
TOKEN = "a-tls-test-token-0123456"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_over_tls_captions_frames_and_the_token_travel_encrypted(
    redis_server, redis_client: redis.Redis, tls_files: tuple[str, str]
) -> None:  # type: ignore[no-untyped-def]
    cert, key = tls_files
    register(redis_client, "cam", live=True)
    publish_caption(redis_client, "cam", 0, "a door opens")
    trusted = ssl.create_default_context(cafile=cert)

    async def body(server: CaptionServer) -> None:
        url = f"wss://127.0.0.1:{server.port}/ws?token={TOKEN}"
        async with connect(url, ssl=trusted) as ws:
            await recv(ws, "hello")
            await ws.send('{"type": "subscribe", "after": "0"}')
            assert (await recv(ws, "caption"))["text"] == "a door opens"

        def get(path: str) -> str:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{server.port}{path}", timeout=T, context=trusted
            ) as response:
                return str(response.read().decode())

        assert await asyncio.to_thread(get, "/healthz") == "ok\n"
        assert "<html" in (await asyncio.to_thread(get, f"/?token={TOKEN}")).lower()
        # plain ws:// to a TLS port is no websocket; an untrusted certificate no connection
        with pytest.raises(Exception):  # noqa: B017 - whichever the handshake fails with
            async with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=T):
                pass
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(url):
                pass

        async def listen(env: dict[str, str]) -> tuple[int | None, str, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stream.cli", "listen", "--url",
                f"wss://localhost:{server.port}/ws", "--after", "0", "--limit", "1",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={**os.environ, "SCENECAST_TOKEN": TOKEN, **env},
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), T * 3)
            return proc.returncode, out.decode(), err.decode()

        code, out, _ = await listen({"SSL_CERT_FILE": cert})
        assert code == 0 and "a door opens" in out
        code, out, err = await listen({})
        assert code == 2 and out == ""
        assert "certificate is not trusted" in err and "SSL_CERT_FILE" in err

    config = ServerConfig(port=0, block_ms=100, token=TOKEN, tls_cert=cert, tls_key=key)
    run_server(redis_server.url, body, config)
    (line,) = banner(config, 8765, on_terminal=False)
    assert "wss://127.0.0.1:8765/ws" in line and "https://127.0.0.1:8765/?token=" in line


def test_the_key_may_be_in_the_certificates_file(
    tls_files: tuple[str, str], tmp_path: Path
) -> None:
    cert, key = tls_files
    both = tmp_path / "both.pem"
    both.write_text(Path(key).read_text() + Path(cert).read_text())
    assert isinstance(server_tls_context(str(both)), ssl.SSLContext)


@pytest.mark.integration
def test_bad_tls_files_are_clear_errors(tls_files: tuple[str, str], tmp_path: Path) -> None:
    cert, key = tls_files
    _, other_key = self_signed(tmp_path, "other")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:secret",
         "-out", str(encrypted)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    cases = [
        ((str(tmp_path / "missing.crt"), key), "--tls-cert", "no such file"),
        ((cert, str(tmp_path / "missing.key")), "--tls-key", "no such file"),
        ((cert, other_key), "cannot serve TLS", "matches it"),  # a key of another cert
        ((str(not_pem), key), "cannot serve TLS", "PEM certificate chain"),
        ((cert, None), "cannot serve TLS", "key may be in the certificate's file"),  # no key
        ((cert, str(encrypted)), "cannot serve TLS", "unencrypted"),  # no prompt, an error
    ]
    for (c, k), first, second in cases:
        with pytest.raises(StreamError) as info:
            server_tls_context(c, k)
        assert first in str(info.value) and second in str(info.value), (c, k)


@pytest.mark.integration
def test_serve_refuses_bad_tls_flags_before_it_starts(tls_files: tuple[str, str]) -> None:
    cert, _ = tls_files
    for flags, message in [
        (["--tls-key", cert], "--tls-key needs --tls-cert"),
        (["--tls-cert", cert + ".missing"], "no such file"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "stream.cli", "serve", "--redis-url", "redis://127.0.0.1:1/0",
             *flags],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
