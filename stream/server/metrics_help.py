"""What each family of ``/metrics`` means: its ``# HELP`` line, added before its
``# TYPE`` line (:func:`with_help`), so that Prometheus, Grafana and a person reading
the page see what is counted without the README."""

from __future__ import annotations

from collections.abc import Sequence

HELP: dict[str, str] = {
    "scenecast_clients": "Websocket clients connected to this server.",
    "scenecast_up": "1 when this server reaches Redis, else 0.",
    "scenecast_server_messages_sent_total": "Messages this server sent to websocket clients.",
    "scenecast_server_bad_messages_total": (
        "Client messages refused with an error message (bad JSON, fields, ids)."
    ),
    "scenecast_server_gaps_total": (
        "Gap messages sent: a client's queue overflowed and one of its sources was paused."
    ),
    "scenecast_server_dropped_captions_total": (
        "Captions not sent to clients because their queue was full, as the gap messages "
        "sent report them (each client resumes from the log)."
    ),
    "scenecast_server_frames_served_total": "Frames served at /frames/SOURCE/ID.jpg.",
    "scenecast_server_frames_missing_total": (
        "Frame requests answered 404: the frame was no longer kept in Redis."
    ),
    "scenecast_server_transcripts_served_total": "Transcripts served at /captions/SOURCE.*.",
    "scenecast_server_refused_requests_total": (
        "Requests refused by reason: a missing or wrong token, a foreign Origin or Host."
    ),
    "scenecast_caption_latency_seconds": (
        "Capture to publication latency of each live caption, per source (Redis's clock)."
    ),
    "scenecast_client_dropped_captions": (
        "Captions dropped for the clients connected now (their queues were full)."
    ),
    "scenecast_worker_captioned_total": "Frames captioned and published, all workers.",
    "scenecast_worker_batches_total": "Batches captioned, all workers.",
    "scenecast_worker_stale_total": (
        "Live frames skipped as older than max-age when a worker got to them, or when "
        "their caption was done."
    ),
    "scenecast_worker_duplicates_total": (
        "Captions not published because their frame already had one (a reclaimed frame)."
    ),
    "scenecast_worker_parked_total": (
        "File-job captions that waited for an older frame's caption, to go out in order."
    ),
    "scenecast_worker_late_total": (
        "Live captions dropped: a newer caption of the source was published first."
    ),
    "scenecast_worker_failed_total": "Frames that could not be captioned (undecodable).",
    "scenecast_worker_deadlettered_total": ("Frames given up on and moved to deadletter:{source}."),
    "scenecast_worker_claimed_total": (
        "Frames taken over from a worker that died or stalled with them (reclaimed)."
    ),
    "scenecast_worker_stage_seconds_total": (
        "Seconds the workers spent per stage (read includes waiting for frames)."
    ),
    "scenecast_worker_caption_cpu_seconds_total": (
        "CPU seconds of the model's thread in the caption stage (against its wall time)."
    ),
    "scenecast_source_state": "Each source's state (1 for its current one).",
    "scenecast_captions": "Captions kept in each source's caption log.",
    "scenecast_capture_frames_total": (
        "Frames per source: read from the source, sampled, published, overwritten unread."
    ),
    "scenecast_capture_bad_reads_total": (
        "Failed reads per source: corrupt frames skipped and reads that lost the source."
    ),
    "scenecast_capture_reconnects_total": "Attempts to reopen each source.",
    "scenecast_workers": "Workers heard from in the last 10 s.",
}


def with_help(lines: Sequence[str]) -> list[str]:
    """``lines`` of an exposition with a ``# HELP`` line before each ``# TYPE`` line
    (families not listed in :data:`HELP` get a plain one naming their kind)."""
    out: list[str] = []
    for line in lines:
        if line.startswith("# TYPE "):
            name, kind = line.removeprefix("# TYPE ").split(" ", 1)
            out.append(f"# HELP {name} {HELP.get(name, f'scenecast {kind}: see the README.')}")
        out.append(line)
    return out
