"""An RTSP camera for tests, on 127.0.0.1, that streams only over TCP.

Enough of RTSP (RFC 2326) for FFmpeg's client: OPTIONS, DESCRIBE (an SDP of one
MPEG-TS video track, RTP payload 33, RFC 2250), SETUP, PLAY, GET_PARAMETER (keep-alive)
and TEARDOWN. A SETUP that asks for UDP is refused with 461 Unsupported Transport, as
cameras behind NAT or firewalls effectively do: only a client that asks for TCP
("interleaved" RTP on the RTSP connection) gets frames. The video is made once
(``frame_image`` frames at ``fps``, MPEG-4 Part 2 in MPEG-TS through OpenCV's FFmpeg)
and sent at its real rate, 7 TS packets per RTP packet. ``stop`` / ``start`` take the
camera away (every connection cut) and bring it back on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import cv2

from tests.support.mjpeg_camera import SIZE, cut, frame_image, free_port

TS_PACKET = 188
PER_RTP = 7  # TS packets per RTP packet (RFC 2250)
SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=scenecast test camera\r\nc=IN IP4 0.0.0.0\r\n"
    "t=0 0\r\nm=video 0 RTP/AVP 33\r\na=rtpmap:33 MP2T/90000\r\na=control:track0\r\n"
)


def make_ts(path: Path, *, fps: float, seconds: float) -> Path:
    """A video of ``frame_image(n)`` frames, MPEG-4 Part 2 in MPEG-TS."""
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), fps, (SIZE[1], SIZE[0])
    )
    if not writer.isOpened():
        raise RuntimeError("OpenCV's FFmpeg cannot write MPEG-TS here")
    for n in range(int(fps * seconds)):
        writer.write(frame_image(n))
    writer.release()
    return path


class RtspCamera:
    """``with RtspCamera() as cam: cam.url``; ``refused_udp`` counts refused SETUPs."""

    def __init__(self, *, fps: float = 20.0, seconds: float = 60.0) -> None:
        self._dir = tempfile.TemporaryDirectory()
        ts = make_ts(Path(self._dir.name) / "camera.ts", fps=fps, seconds=seconds)
        self._ts = ts.read_bytes()
        self._bytes_per_s = len(self._ts) / seconds
        self.refused_udp = 0
        self.setups_tcp = 0
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = free_port()
        self.start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Go away: stop listening and cut every open connection."""
        if self._listener is None:
            return
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._listener = None
        cut(self._connections, self._lock)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._dir.cleanup()

    # -- the server

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        send_lock = threading.Lock()
        reader = conn.makefile("rb")
        try:
            while True:
                first = reader.read(1)
                if not first:
                    return
                if first == b"$":  # interleaved data from the client (RTCP reports)
                    _channel, length = struct.unpack(">BH", reader.read(3))
                    reader.read(length)
                    continue
                lines = [first + reader.readline()]
                while lines[-1] not in (b"\r\n", b"\n", b""):
                    lines.append(reader.readline())
                headers = {}
                for line in lines[1:-1]:
                    key, _, value = line.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                reader.read(int(headers.get("content-length", "0")))
                method = lines[0].decode().split(" ", 1)[0]
                self._answer(conn, send_lock, method, headers)
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(
        self, conn: socket.socket, send_lock: threading.Lock, method: str, headers: dict[str, str]
    ) -> None:
        cseq = headers.get("cseq", "0")
        extra, body, status = "", "", "200 OK"
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN\r\n"
        elif method == "DESCRIBE":
            extra, body = f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n", SDP
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "TCP" not in transport.upper():
                self.refused_udp += 1
                status = "461 Unsupported Transport"
            else:
                self.setups_tcp += 1
                extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 1\r\n"
        elif method == "PLAY":
            extra = "Session: 1\r\n"
        elif method not in ("GET_PARAMETER", "TEARDOWN"):
            status = "405 Method Not Allowed"
        reply = f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}"
        reply += f"Content-Length: {len(body)}\r\n\r\n{body}"
        with send_lock:
            conn.sendall(reply.encode())
        if method == "PLAY":
            threading.Thread(target=self._play, args=(conn, send_lock), daemon=True).start()

    def _play(self, conn: socket.socket, send_lock: threading.Lock) -> None:
        """RTP over the RTSP connection (channel 0) at the video's own rate."""
        chunk = TS_PACKET * PER_RTP
        started = time.monotonic()
        for seq, offset in enumerate(range(0, len(self._ts), chunk)):
            due = started + offset / self._bytes_per_s
            time.sleep(max(0.0, due - time.monotonic()))
            stamp = int((time.monotonic() - started) * 90_000) & 0xFFFFFFFF
            rtp = struct.pack(">BBHII", 0x80, 33, seq & 0xFFFF, stamp, 0x5CEC)
            payload = rtp + self._ts[offset : offset + chunk]
            try:
                with send_lock:
                    conn.sendall(b"$\x00" + struct.pack(">H", len(payload)) + payload)
            except OSError:
                return
