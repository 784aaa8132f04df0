"""The captioner in a process of its own, fed JPEG batches through a pipe.

Why: on a GPU the model's thread is bound by the host (it launches ~1,000 small
kernels per batch from Python), so it needs its process's GIL nearly all the time.
Beside it, the worker's reader (Redis reads, frame parsing) and publisher (caption
entries, the publish script) take the same GIL, and every hand-over costs the model:
on an H100 a batch of 32 took ~43 ms inside the worker against ~33 ms alone
(BENCHMARKS.md; part of that may have been the reader's decodes holding up the
model's CUDA stream, since changed in ``worker/decode.py``). Here the worker's
process keeps the Redis side and its threads; this child holds the model alone and
does nothing but decode (nvJPEG on the GPU) and caption. What crosses the pipes is
small: the JPEG bytes in (~15 KB a frame) and the captions out. ``scenecast worker
--model-process``; off by default: on the one H100 it was measured on, it tied with
the model in the worker's process (BENCHMARKS.md).

Decoding stays off the model's path: the worker's reader sends each frame's JPEG
ahead (``prefetch``, a pipe of its own) as soon as it has read it, and a thread of
the child decodes it while the model captions the batch before; the batch (sent with
its JPEGs again, so nothing depends on the prefetch having arrived) takes the frames
decoded ahead and decodes only the rest (``worker/decoded_ahead.py``).

The child ignores SIGINT and SIGTERM (a Ctrl+C reaches the whole process group; the
worker decides when to stop): it exits when the pipe closes, and the kernel kills it
if the worker dies without closing it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from worker.decoded_ahead import MISSING, DecodedAhead
from worker.parent_death import die_with_parent

if TYPE_CHECKING:
    from captioner.hold import ShownCaptions

log = logging.getLogger("scenecast.worker")

START_TIMEOUT_S = 600.0  # loading and warming a model on a cold GPU host can be slow
AHEAD_BATCHES = 4  # frames decoded ahead are kept for this many batches at most

Frame = tuple[str, bytes]  # (a key unique to the frame, its JPEG bytes)


class ModelProcessError(RuntimeError):
    """The model's process failed or exited."""


class ModelProcess:
    """``__call__(frames)`` → one caption per (key, JPEG) frame, ``None`` where one does
    not decode; ``prefetch(frames)`` has them decoded ahead, from another thread.

    ``checkpoint`` None: the bundled default. Raises what loading the model raised
    (e.g. a missing checkpoint) from the constructor. ``decode_on``: where the child
    decodes, as ``decode_device`` takes it. Use with ``contextlib.closing``.
    """

    def __init__(
        self,
        checkpoint: str | None,
        *,
        device: str,
        beam: int,
        max_batch: int,
        decode_on: str = "device",
        search: Mapping[str, Any] | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA
        self._conn, child = ctx.Pipe()  # batches in, captions out
        child_ahead, self._ahead = ctx.Pipe(duplex=False)  # JPEGs to decode ahead
        self.decoded_ahead = 0  # frames whose batch found them decoded ahead
        self.model_id = self.fit = self.device = ""  # the child's reply, below
        self._sending_ahead = True
        self._proc = ctx.Process(
            target=_serve,
            args=(child, child_ahead, checkpoint, device, beam, dict(search or {}), max_batch,
                  decode_on, os.getpid()),
            name="scenecast-model",
            daemon=True,
        )  # fmt: skip
        self._proc.start()
        child.close()
        child_ahead.close()
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise ModelProcessError(f"the model did not load within {START_TIMEOUT_S:.0f} s")
            self.model_id, self.fit, self.device = self._reply()
        except BaseException:
            self.close()
            raise

    def prefetch(self, frames: Sequence[Frame]) -> None:
        """Have these frames decoded ahead of their batch (no reply; from one thread).

        If the child stopped decoding ahead (its thread failed: logged there), this
        says so once and sends nothing more; batches then decode their own frames.
        """
        if not frames or not self._sending_ahead:
            return
        try:
            self._ahead.send([(key, bytes(jpeg)) for key, jpeg in frames])
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            if not self._proc.is_alive():
                raise self._died() from exc
            self._sending_ahead = False
            log.warning("the model's process stopped decoding ahead (%s): each batch "
                        "decodes its own frames from now on", exc)  # fmt: skip

    @property
    def sending_ahead(self) -> bool:
        """False once the child stopped decoding ahead."""
        return self._sending_ahead

    def __call__(
        self, frames: Sequence[Frame], sources: Sequence[str], shown: ShownCaptions
    ) -> list[Any]:
        """One caption per frame, ``None`` where one does not decode; ``shown`` (what
        the sources showed, for the caption hold) is updated as the child updated it."""
        if not frames:
            return []
        try:
            self._conn.send(([(key, bytes(jpeg)) for key, jpeg in frames], list(sources), shown))
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise self._died() from exc
        captions, ahead, changed = self._reply()
        self.decoded_ahead += ahead
        for source, state in changed.items():  # only those the child's captioner set
            shown.put(source, state)
        return list(captions)

    def _reply(self) -> Any:
        try:
            kind, value = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError) as exc:
            raise self._died() from exc
        if kind == "error":
            raise value
        return value

    def _died(self) -> ModelProcessError:
        self._proc.join(5)
        return ModelProcessError(f"the model's process exited (exit code {self._proc.exitcode})")

    def close(self) -> None:
        """Close the pipes (the child exits after its batch in hand) and reap it."""
        self._ahead.close()
        self._conn.close()
        self._proc.join(30)
        if self._proc.is_alive():
            log.warning("the model's process did not exit: killing it")
            self._proc.kill()
            self._proc.join(5)


def _serve(
    conn: Connection,
    ahead_conn: Connection,
    checkpoint: str | None,
    device: str,
    beam: int,
    search: dict[str, Any],
    max_batch: int,
    decode_on: str,
    parent: int,
) -> None:
    """The child: load, say ready, then caption batches until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL, parent)
    try:
        from captioner.api import Captioner
        from worker.decode import decode_device, decode_jpegs

        cap = Captioner.load(checkpoint, device=device)
        cap.override(search)
        on = decode_device(decode_on, str(cap.device))
        if cap.device.type == "cuda":
            cap.warm_up(max_batch)
    except Exception as exc:  # sent back: the worker raises it as its own
        _send_error(conn, exc)
        return
    ahead = DecodedAhead(AHEAD_BATCHES * max_batch)
    threading.Thread(
        target=_decode_ahead, args=(ahead_conn, ahead, on), name="decode-ahead", daemon=True
    ).start()
    conn.send(("ok", (cap.model_id, cap.fit, str(cap.device))))
    for frames, sources, shown in _received(conn):
        try:
            images = [ahead.take(key) for key, _ in frames]
            late = [i for i, image in enumerate(images) if image is MISSING]
            if late:  # not decoded ahead (yet): here, on the model's path
                decoded = decode_jpegs([frames[i][1] for i in late], device=on)
                for i, image in zip(late, decoded, strict=True):
                    images[i] = image
            ok = [(i, image) for i, image in enumerate(images) if image is not None]
            before = shown.snapshot()
            captions = cap.caption(
                [image for _, image in ok],
                beam=beam,
                sources=[sources[i] for i, _ in ok],
                shown=shown,
            )
            changed = shown.set_since(before)
            out: list[Any] = [None] * len(frames)
            for (i, _), caption in zip(ok, captions, strict=True):
                out[i] = caption
        except Exception as exc:
            _send_error(conn, exc)
            continue
        try:
            conn.send(("ok", (out, len(frames) - len(late), changed)))
        except OSError:  # the worker is gone
            return


def _decode_ahead(conn: Connection, ahead: DecodedAhead, device: str) -> None:
    """The child's second thread: decode what the worker sends ahead, until EOF.

    Whatever ends it closes its end of the pipe: a pipe nobody reads would block the
    worker's reader once full, where a closed one tells it to stop sending ahead.
    """
    from worker.decode import decode_jpegs

    with conn:
        for frames in _received(conn):
            try:
                images = decode_jpegs([jpeg for _, jpeg in frames], device=device)
            except Exception as exc:  # the batch decodes them itself and reports the error
                log.warning("decoding ahead failed: %s", exc)
                continue
            for (key, _), image in zip(frames, images, strict=True):
                ahead.put(key, image)


def _received(conn: Connection) -> Iterator[Any]:
    """The worker's messages on ``conn`` until it closes the pipe: batches (frames and
    their sources) on the first pipe, lists of frames on the one ahead."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        yield message


def _send_error(conn: Connection, exc: Exception) -> None:
    try:
        try:
            conn.send(("error", exc))
        except (pickle.PicklingError, TypeError, AttributeError):  # not picklable: its text
            conn.send(("error", ModelProcessError(f"{type(exc).__name__}: {exc}")))
    except OSError:  # the worker is gone
        pass
