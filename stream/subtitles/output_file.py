"""An output file written all at once: nothing partial is ever left at its path."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from pathlib import Path

from stream.exceptions import StreamError
from stream.subtitles.cues import STDOUT

_NAME_MAX = 255  # bytes of one file name (Linux, macOS)


def _temporary_name(name: str) -> str:
    """A hidden name beside ``name`` for the file being written; a shorter one where
    ``name`` is near the longest a name may be (it added 14 bytes and failed)."""
    token = secrets.token_hex(4)
    full = f".{name}.{token}.tmp"
    return full if len(os.fsencode(full)) <= _NAME_MAX else f".scenecast-{token}.tmp"


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return f"{exc.strerror} (accepted: names up to {_NAME_MAX} bytes, paths up to 4096)"
    return exc.strerror or str(exc)


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


class OutputFile:
    """``target`` written all at once: a temporary file beside it, renamed over it at the end.

    ``open()`` creates the temporary file (so an unwritable target fails before any work);
    ``commit(text)`` writes and renames; ``discard()`` removes the temporary file. ``-``
    is stdout (written at ``commit``).
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._path = Path(target)  # the file written: target, or what a link points at
        self._tmp: Path | None = None
        self._fd: int | None = None

    def open(self) -> None:
        if self.target == STDOUT:
            return
        # through a symbolic link to the file it points at, as `> link` does (renaming
        # over the link replaced it with a file and left its target as it was)
        path = Path(os.path.realpath(self.target))
        try:
            if path.is_dir():
                raise StreamError(f"cannot write {self.target}: it is a directory")
        except OSError as exc:  # e.g. ENAMETOOLONG
            raise StreamError(f"cannot write {_shown(self.target)}: {_why(exc)}") from None
        directory = path.parent
        self._path = path
        for _ in range(100):
            tmp = directory / _temporary_name(path.name)
            try:
                self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            except FileNotFoundError as exc:
                if directory.is_dir():  # /proc, /sys: a directory that takes no new files
                    raise StreamError(
                        f"cannot write {self.target}: {directory} takes no new files "
                        f"({exc.strerror})"
                    ) from None
                raise StreamError(
                    f"cannot write {self.target}: directory {directory} does not exist"
                ) from None
            except NotADirectoryError:
                raise StreamError(
                    f"cannot write {self.target}: {directory} is not a directory"
                ) from None
            except PermissionError:
                raise StreamError(
                    f"cannot write {self.target}: directory {directory} is not writable"
                ) from None
            except OSError as exc:
                raise StreamError(f"cannot write {_shown(self.target)}: {_why(exc)}") from None
            self._tmp = tmp
            return
        raise StreamError(f"cannot write {self.target}: no free temporary name in {directory}")

    def commit(self, text: str) -> None:
        if self.target == STDOUT:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        if self._fd is None or self._tmp is None:
            raise RuntimeError("OutputFile.commit() before open()")
        fd, self._fd = self._fd, None
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self._tmp, stat.S_IMODE(os.stat(self._path).st_mode))  # keep its mode
            os.replace(self._tmp, self._path)
        except OSError as exc:
            self.discard()
            raise StreamError(f"cannot write {self.target}: {exc.strerror or exc}") from None
        self._tmp = None

    def discard(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._tmp = None
