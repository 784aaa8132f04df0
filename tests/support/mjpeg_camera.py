"""A network camera for tests: MJPEG over HTTP on 127.0.0.1, as many IP cameras serve.

Each client gets ``multipart/x-mixed-replace`` JPEG parts at ``fps``, generated on the
fly from the camera's clock: frame n (``now()``) is a flat grey of level ``n % 256``
(``frame_number`` reads it back within the JPEG's error), so a test can tell how far
behind the camera a reader is.
The camera can go away and come back on the same port (``stop`` / ``start``: its open
connections are cut, as a camera that reboots or loses power), or freeze with its
connections open and silent (``freeze`` / ``thaw``: a stalled stream), and send
broken parts now and then (``corrupt_every``); with ``login`` it asks for HTTP Basic
authentication.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

import cv2
import numpy as np

BOUNDARY = b"scenecastframe"
SIZE = (240, 320)  # (H, W)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cut(connections: set[socket.socket], lock: threading.Lock) -> None:
    """Shut every connection down (the other side sees the camera go away) and forget them."""
    with lock:
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        connections.clear()


def frame_image(n: int) -> np.ndarray:
    """Camera frame n: (H, W, 3) BGR, flat grey ``n % 256``."""
    return np.full((*SIZE, 3), n % 256, dtype=np.uint8)


def frame_number(image: np.ndarray) -> int:
    """The camera frame number (mod 256) an image shows, from its mean grey level."""
    return round(float(image.mean())) % 256


class MjpegCamera:
    """``with MjpegCamera(fps=20) as cam: cam.url``; ``sent`` counts frames served."""

    def __init__(
        self,
        *,
        fps: float = 20.0,
        path: str = "/video.mjpg",
        corrupt_every: int = 0,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.fps = fps
        self.path = path
        self.corrupt_every = corrupt_every  # n: each connection's n-th part, 2n-th...: not a JPEG
        self.corrupted = 0
        # HTTP Basic authentication, as most IP cameras ask for; None: none
        self.login = login
        self.refused_logins = 0
        self.sent = 0  # the newest frame number served to any client
        self._epoch = time.monotonic()
        self._frozen = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = free_port()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        """Serve (again) on the camera's port."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Go away: stop listening and cut every open connection."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        cut(self._connections, self._lock)

    def freeze(self) -> None:
        """Keep the connections open but send nothing (a stalled stream)."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.thaw()
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != camera.path:
                    self.send_error(404)
                    return
                if camera.login is not None:
                    token = base64.b64encode(":".join(camera.login).encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        camera.refused_logins += 1
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
                )
                self.end_headers()
                with camera._lock:
                    camera._connections.add(self.connection)
                camera._stream(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        interval = 1.0 / self.fps
        parts = 0  # sent on this connection
        while handler.connection in self._connections:
            time.sleep(interval)
            if self._frozen.is_set():
                continue
            number = self.now()
            _ok, jpeg = cv2.imencode(".jpg", frame_image(number))
            body = jpeg.tobytes()
            parts += 1
            if self.corrupt_every and parts % self.corrupt_every == 0:
                body = b"\xff\xd8 not a JPEG " * 20  # a broken part, as a flaky link makes
                self.corrupted += 1
            part = (
                b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body + b"\r\n"
            )
            try:
                handler.wfile.write(part)
                handler.wfile.flush()
            except OSError:
                break
            self.sent = max(self.sent, number)
        with self._lock:
            self._connections.discard(handler.connection)

    def now(self) -> int:
        """The camera's frame number now: its clock, in frames since it was made."""
        return int((time.monotonic() - self._epoch) * self.fps)
