"""What a user points scenecast at: the text they typed ("0", "rtsp://…", "demo.mp4")
becomes a validated ``SourceSpec`` with a short URL-safe name. Pure: nothing is opened
(``stream.sources.readers`` opens it)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from stream.exceptions import SourceError
from worker.bus.names import MAX_NAME_CHARS, NAME_CHARS, is_source_name
from worker.bus.redact import redact_url

SourceKind = Literal["webcam", "rtsp", "http", "file"]

_SCHEMES: dict[str, SourceKind] = {
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "http": "http",
    "https": "http",
}
ACCEPTED = "a webcam index like 0, rtsp://…, rtsps://…, http(s)://…, or a video file path"
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, repr=False)
class SourceSpec:
    """A validated source. ``target`` may hold URL credentials: show ``display``, not it."""

    kind: SourceKind
    target: int | str | Path  # webcam index, URL (as given) or file path
    name: str  # short URL-safe id: the ``{src}`` in Redis keys and the wire protocol
    live: bool  # live: drop stale frames; not live: every sampled frame is captioned

    def __post_init__(self) -> None:
        if self.kind not in ("webcam", "rtsp", "http", "file"):
            raise SourceError(
                f"unknown source kind {self.kind!r} (accepted: webcam, rtsp, http, file)"
            )
        _check_name(self.name)

    @property
    def display(self) -> str:
        """The target as it may be logged: URL passwords and query strings are hidden."""
        if isinstance(self.target, str):
            return redact_url(self.target)
        return str(self.target)

    def __repr__(self) -> str:
        return (
            f"SourceSpec(kind={self.kind!r}, target={self.display!r}, "
            f"name={self.name!r}, live={self.live!r})"
        )


def parse_source(text: str, *, name: str | None = None, live: bool | None = None) -> SourceSpec:
    """Turn what a user typed into a ``SourceSpec``.

    "0", "1"… are webcams (a file literally named "0" must be given as "./0");
    rtsp:// and rtsps:// are RTSP; http:// and https:// are HTTP streams; anything else
    is a path to a video file that must exist. ``live`` defaults to True for webcams and
    URLs and False for files; a URL given ``live=False`` is read as a recording
    (e.g. https://host/clip.mp4: every frame, nothing dropped).
    """
    raw, text = text, text.strip()
    if not text:
        raise SourceError(f"empty source (accepted: {ACCEPTED})")
    if name is not None:
        _check_name(name)
    if text.isascii() and text.isdigit():
        if live is False:
            raise SourceError(f"a webcam ({text}) is always live; live=False is for files")
        index = int(text)
        return SourceSpec("webcam", index, name or f"cam{index}", True)
    scheme = _URL_RE.match(text)
    if scheme is not None:
        kind = _SCHEMES.get(scheme.group(1).lower())
        if kind is None:
            raise SourceError(
                f"unsupported URL scheme {scheme.group(1)!r} in {redact_url(text)} "
                "(accepted: rtsp://, rtsps://, http://, https://; a local file is given "
                "as a plain path)"
            )
        parts = urlsplit(text)
        if not parts.hostname:
            raise SourceError(f"no host in {redact_url(text)} (accepted: {ACCEPTED})")
        return SourceSpec(kind, text, name or _url_name(text), True if live is None else live)
    path = local_path(raw)
    if path is None:
        raise SourceError(f"no such file: {text} (accepted: {ACCEPTED})")
    if not path.is_file():
        raise SourceError(f"not a regular file: {text} (accepted: {ACCEPTED})")
    return SourceSpec("file", path, name or _file_name(path), bool(live))


def local_path(text: str) -> Path | None:
    """The existing file or directory ``text`` names, None if none: as given (a name
    may start or end with a space, or start with "~"), else without the spaces around
    it, else with "~" expanded (a path quoted in a config file or a script)."""
    candidates = [Path(text), Path(text.strip())]
    with contextlib.suppress(RuntimeError):  # "~name" with no such user
        candidates.append(Path(text.strip()).expanduser())
    try:
        return next((p for p in candidates if p.exists()), None)
    except OSError as exc:  # ENAMETOOLONG: exists() raises it
        shown = text if len(text) <= 80 else f"{text[:40]}…{text[-40:]}"
        raise SourceError(
            f"{shown}: {exc.strerror} (accepted: file names up to 255 bytes, paths up to 4096)"
        ) from None


def _check_name(name: str) -> None:
    if not is_source_name(name):
        raise SourceError(
            f"invalid source name {name!r} (accepted: 1–64 characters from A–Z, a–z, 0–9, "
            "'_', '.', '-')"
        )


def _file_name(path: Path) -> str:
    return _sanitize(path.stem) or "file"


def _url_name(url: str) -> str:
    """Host + path, e.g. rtsp://u:p@cam.local:554/live/main → cam.local-live-main.

    Never the user, password, port or query; path segments of the form key=value
    (some cameras put credentials there) are left out too.
    """
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s and "=" not in s]
    return _sanitize("-".join([parts.hostname or "", *segments])) or "stream"


def _sanitize(text: str) -> str:
    """Map to [A-Za-z0-9_.-]; too long names keep a hash of the full text (stay distinct)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    clean = re.sub(f"[^{NAME_CHARS}]+", "-", ascii_text).strip("-.")
    if len(clean) > MAX_NAME_CHARS:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        clean = f"{clean[: MAX_NAME_CHARS - 9].rstrip('-.')}-{digest}"
    return clean
