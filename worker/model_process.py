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
small: the JPEG bytes in (~10 KB a frame) and the captions out. ``scenecast worker
--model-process``; off by default: on the H100 it was measured on, neither way
reliably beat the other (BENCHMARKS.md).

The child has one thread: it decodes each batch (nvJPEG on a GPU, ~1-3 ms for 32
frames) and captions it. A second thread that decoded frames sent ahead of their
batch (session 5) measured slower on the H100 (session 9: 65 and 76 % against 79,
85, 95 and 75 % without it, one machine start): each of its GIL hand-overs is one
the model's thread waits for.

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
import time
from collections.abc import Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from worker.bus.parent_death import die_with_parent

if TYPE_CHECKING:
    from captioner.search.hold import ShownCaptions

log = logging.getLogger("scenecast.worker")

START_TIMEOUT_S = 600.0  # loading and warming a model on a cold GPU host can be slow


class ModelProcessError(RuntimeError):
    """The model's process failed or exited."""


class ModelProcess:
    """``__call__(frames)`` → one caption per JPEG frame, ``None`` where one does
    not decode.

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
        self.model_id = self.fit = self.device = ""  # the child's reply, below
        # the last batch's seconds in the child: "model_decode" and "caption" (the rest
        # of a call is the pipes' and pickling's: the worker reports it as "transfer")
        self.last_stages: dict[str, float] = {}
        self.last_cpu_s = 0.0  # the child's thread's CPU time in them
        self._proc = ctx.Process(
            target=_serve,
            args=(child, checkpoint, device, beam, dict(search or {}), max_batch, decode_on,
                  os.getpid()),
            name="scenecast-model",
            daemon=True,
        )  # fmt: skip
        self._proc.start()
        child.close()
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise ModelProcessError(f"the model did not load within {START_TIMEOUT_S:.0f} s")
            self.model_id, self.fit, self.device = self._reply()
        except BaseException:
            self.close()
            raise

    def __call__(
        self, frames: Sequence[bytes], sources: Sequence[str], shown: ShownCaptions
    ) -> list[Any]:
        """One caption per frame, ``None`` where one does not decode; ``shown`` (what
        the sources showed, for the caption hold) is updated as the child updated it."""
        if not frames:
            return []
        try:
            self._conn.send(([bytes(jpeg) for jpeg in frames], list(sources), shown))
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise self._died() from exc
        captions, changed, self.last_stages, self.last_cpu_s = self._reply()
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
        """Close the pipe (the child exits after its batch in hand) and reap it."""
        self._conn.close()
        self._proc.join(30)
        if self._proc.is_alive():
            log.warning("the model's process did not exit: killing it")
            self._proc.kill()
            self._proc.join(5)


def _serve(
    conn: Connection,
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
    conn.send(("ok", (cap.model_id, cap.fit, str(cap.device))))
    for frames, sources, shown in _received(conn):
        try:
            started, cpu = time.perf_counter(), time.thread_time()
            images = decode_jpegs(frames, device=on)
            decoded = time.perf_counter()
            ok = [(i, image) for i, image in enumerate(images) if image is not None]
            before = shown.snapshot()
            captions = cap.caption(
                [image for _, image in ok],
                beam=beam,
                sources=[sources[i] for i, _ in ok],
                shown=shown,
            )
            changed = shown.set_since(before)
            stages = {"model_decode": decoded - started, "caption": time.perf_counter() - decoded}
            out: list[Any] = [None] * len(frames)
            for (i, _), caption in zip(ok, captions, strict=True):
                out[i] = caption
        except Exception as exc:
            _send_error(conn, exc)
            continue
        try:
            conn.send(("ok", (out, changed, stages, time.thread_time() - cpu)))
        except OSError:  # the worker is gone
            return


def _received(conn: Connection) -> Iterator[Any]:
    """The worker's batches (frames, their sources, what the sources show) on ``conn``
    until it closes the pipe."""
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
