"""TLS for the server: ``--tls-cert`` (and ``--tls-key``) make it ``wss://`` and
``https://`` on the same port, for a machine with no reverse proxy in front (a token
sent over plain HTTP can be read by anyone on the network path)."""

from __future__ import annotations

import ssl
from pathlib import Path

from stream.exceptions import StreamError


def server_tls_context(cert: str, key: str | None = None) -> ssl.SSLContext:
    """A server context from a PEM certificate chain and its private key (``key``
    None: the key is in the certificate's file). TLS 1.2 and later."""
    for what, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not Path(path).is_file():
            raise StreamError(f"{what} {path}: no such file (accepted: a PEM file)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # an encrypted key would make OpenSSL prompt on the terminal: refuse it instead
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        files = f"--tls-cert {cert}" + (f" and --tls-key {key}" if key else "")
        raise StreamError(
            f"cannot serve TLS with {files}: {exc.reason or exc} (accepted: a PEM "
            "certificate chain and the PEM private key that matches it, unencrypted; the "
            "key may be in the certificate's file)"
        ) from None
    except OSError as exc:
        raise StreamError(f"cannot read {cert if key is None else f'{cert} / {key}'}: "
                          f"{exc.strerror or exc}") from None  # fmt: skip
    return context
