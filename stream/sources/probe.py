"""Sources checked before a service starts: a bad file or URL is an error now, not a
reconnect loop later."""

from __future__ import annotations

import dataclasses
import sys
import threading

from stream.exceptions import StreamError
from stream.sources.readers import PROBE_TIMEOUT_MS, grab_first, is_recording, open_capture
from stream.sources.spec import SourceSpec, parse_source
from stream.sources.stoppable_call import call_unless_stopped


def resolve_sources(
    texts: list[str], names: list[str] | None, *, live: bool, loop: bool
) -> list[SourceSpec]:
    """The sources a user named (``--name`` once per source, or none), each opened once
    (:func:`probe`); a recording at a URL is a file job unless ``live``."""

    if names is not None and len(names) != len(texts):
        raise StreamError(
            f"--name given {len(names)} times for {len(texts)} sources; "
            "give one per source, in order, or none"
        )
    specs = []
    for i, text in enumerate(texts):
        as_live = True if live else None
        specs.append(parse_source(text, name=names[i] if names else None, live=as_live))
    if len({s.name for s in specs}) != len(specs):
        raise StreamError("two sources have the same name; set them apart with --name")
    if loop and not live:
        raise StreamError("--loop needs --live (a looped file is played as a camera)")
    for i, spec in enumerate(specs):
        recording = probe(spec)
        if spec.kind == "file":
            continue
        if loop and not recording:
            raise StreamError(
                f"--loop is for recordings; {spec.display} is a live {spec.kind} stream"
            )
        if recording and not live:
            # a clip at a URL (https://host/clip.mp4) is a job like a file, not a stream
            # read as fast as it downloads whose end looks like a lost camera
            specs[i] = dataclasses.replace(spec, live=False)
            print(
                f"scenecast: {spec.display} is a recording: captioned as a file job "
                "(every sampled frame, then 'ended'); --live plays it as a camera",
                file=sys.stderr,
            )
    return specs


def probe(spec: SourceSpec) -> bool:
    """Open a source once before starting: a bad file or URL is an error now, not a
    reconnect loop later (a live source that fails after a good start is retried).
    Returns whether it is a recording (``stream.sources.readers.is_recording``)."""

    # in a thread: Ctrl+C (KeyboardInterrupt in the wait) need not wait out the open
    # timeout of a camera that takes the connection and sends nothing
    capture = call_unless_stopped(
        lambda: open_capture(
            spec, open_timeout_ms=PROBE_TIMEOUT_MS, read_timeout_ms=PROBE_TIMEOUT_MS
        ),
        threading.Event(),  # never set: only an interrupt leaves early
        discard=lambda c: c.release(),
        name="probe",
    )
    assert capture is not None
    try:
        if spec.kind == "file" and not grab_first(capture):
            raise StreamError(
                f"{spec.display}: no video frames could be read (accepted: video "
                "files OpenCV/FFmpeg can decode, e.g. MP4/H.264, MKV, AVI, WebM)"
            )
        return is_recording(capture)
    finally:
        capture.release()
