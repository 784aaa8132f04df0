"""The service's subcommands: ``run``, ``capture``, ``worker``, ``serve``, ``listen``,
``status``, ``forget`` and ``demo`` — their flags, and what each runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from stream.cli.arg_types import (
    beam_size,
    flag_type,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
)
from stream.cli.model import add_ban_words_flag, add_consensus_flag, add_hold_flag, search_overrides
from stream.cli.sampling_flags import add_sampling_flags, sampling_config
from stream.exceptions import StreamError
from stream.server.access import MIN_TOKEN_CHARS, access_token, allowed_hosts, allowed_origins
from stream.server.server import COMPRESSION
from stream.subtitles.caption import SERVICE_BEAM
from worker.decode import DECODE_ON

if TYPE_CHECKING:
    pass


def _redis_url(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--redis-url",
        default=None,
        required=required,  # unless the environment or --config sets it (stream.cli.settings)
        help="redis://HOST:PORT/DB (env SCENECAST_REDIS_URL)",
    )


def _capture_flags(p: argparse.ArgumentParser) -> None:
    add_sampling_flags(p)
    p.add_argument(
        "--live",
        action="store_true",
        help="treat a file as a camera: paced at its frame rate, newest frame only",
    )
    p.add_argument("--loop", action="store_true", help="with --live: start again at the end")
    p.add_argument(
        "--restart",
        action="store_true",
        help="a file job under a name whose job has ended: caption it again, its log "
        "replaced (without it such a capture is refused; one that did not end resumes)",
    )
    p.add_argument(
        "--preview-side",
        type=non_negative_int,
        default=640,
        metavar="PX",
        help="live sources: also keep each sampled frame at this longer side (never "
        "enlarged) for the viewer, which otherwise shows the model's 256-px frame; 0: off "
        "(default 640)",
    )


def _worker_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="captioner checkpoint (default: bundled)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--beam", type=beam_size, default=SERVICE_BEAM, help="beam size (default %(default)s)"
    )
    add_consensus_flag(p)
    add_ban_words_flag(p)
    add_hold_flag(p)
    p.add_argument(
        "--max-batch",
        type=positive_int,
        default=32,
        help="most frames captioned in one batch, across sources (default %(default)s)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=non_negative_float,
        default=50.0,
        help="longest a batch's first frame waits for more to fill it (default %(default)s)",
    )
    p.add_argument(
        "--max-age-ms",
        type=positive_float,
        default=3000.0,
        help="live frames older than this are skipped, never captioned late (default %(default)s)",
    )
    p.add_argument(
        "--model-process",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the model in a process of its own, fed JPEGs through a pipe, so it "
        "shares no GIL with the Redis I/O threads (default: off)",
    )
    p.add_argument(
        "--decode",
        choices=DECODE_ON,
        default="device",
        help="where JPEG frames are decoded: on the model's device (nvJPEG on a GPU) or "
        "on the CPU with OpenCV (default: device)",
    )


SOURCE_NAME_HELP = (
    "source name (default: from the source: a file's stem, cam0 for webcam 0, a URL's host "
    "and path)"
)


def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for every interface (default %(default)s)",
    )
    p.add_argument(
        "--port",
        type=port,
        default=8765,
        help="port for /ws, the viewer and /metrics (default %(default)s)",
    )
    p.add_argument(
        "--compression",
        choices=COMPRESSION,
        default="none",
        help="websocket messages uncompressed (half the server's CPU per client) or "
        "permessage-deflate (~40%% of the bytes, for slow links) (default: none)",
    )
    _token_flag(
        p,
        f"every request but /healthz must carry it (Authorization: Bearer TOKEN, or "
        f"?token=TOKEN); at least {MIN_TOKEN_CHARS} characters; better given as "
        "SCENECAST_TOKEN than on the command line, which other users can see (default: none)",
    )
    p.add_argument(
        "--allow-origin",
        type=flag_type(allowed_origins),
        default=(),
        metavar="ORIGINS",
        help="pages of other sites that may open the websocket, e.g. "
        "https://dash.example.com (comma-separated; * for any); pages this server "
        "serves always may (default: none)",
    )
    p.add_argument(
        "--allow-host",
        type=flag_type(allowed_hosts),
        default=(),
        metavar="NAMES",
        help="names a server on a loopback address also answers to, e.g. the public name "
        "a reverse proxy on this machine passes on (comma-separated; default: none)",
    )
    p.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="serve wss:// and https:// with this certificate chain (default: plain ws://; "
        "or leave TLS to a reverse proxy)",
    )
    p.add_argument(
        "--tls-key", default=None, metavar="PEM", help="its private key, if not in that file"
    )


def _server_config(args: argparse.Namespace) -> Any:
    from stream.server.server import ServerConfig
    from stream.server.tls import server_tls_context

    if args.tls_key is not None and args.tls_cert is None:
        raise StreamError("--tls-key needs --tls-cert: the certificate chain it belongs to")
    if args.tls_cert is not None:
        server_tls_context(args.tls_cert, args.tls_key)  # a bad file fails now, not later
    return ServerConfig(
        host=args.host,
        port=args.port,
        compression=args.compression,
        token=args.token,
        allow_origins=args.allow_origin,
        allow_hosts=args.allow_host,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _token_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument(
        "--token", type=flag_type(access_token), default=None, metavar="TOKEN", help=help
    )


def add_service_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo", help="the live pipeline on the bundled demo video, looped as a camera (make run)"
    )
    _worker_flags(demo)
    _server_flags(demo)
    demo.set_defaults(expands_to=demo_argv)  # main parses it as run, settings and all

    r = sub.add_parser("run", help="everything on one machine: Redis, capture, worker, server")
    r.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="webcam index (0), rtsp://..., http(s)://... or a video file",
    )
    r.add_argument(
        "--name",
        action="append",
        default=None,
        help=f"{SOURCE_NAME_HELP}; once per source, in order",
    )
    _redis_url(r, required=False)
    _capture_flags(r)
    _worker_flags(r)
    _server_flags(r)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("capture", help="read one source and publish sampled frames to Redis")
    c.add_argument("source", metavar="SOURCE")
    c.add_argument("--name", default=None, help=SOURCE_NAME_HELP)
    _redis_url(c, required=True)
    _capture_flags(c)
    c.set_defaults(func=cmd_capture)

    w = sub.add_parser("worker", help="caption frames from Redis (scale out: run several)")
    _redis_url(w, required=True)
    _worker_flags(w)
    w.add_argument("--exit-with-parent", type=int, default=None, help=argparse.SUPPRESS)
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser(
        "serve", help="the websocket server (/ws, /, /healthz, /metrics, /frames, /captions)"
    )
    _redis_url(s, required=True)
    _server_flags(s)
    s.set_defaults(func=cmd_serve)

    listen = sub.add_parser("listen", help="print captions from a server as they arrive")
    listen.add_argument(
        "--url",
        default="ws://127.0.0.1:8765/ws",  # stream.clients.listen.DEFAULT_URL
        help="the server's websocket (default %(default)s)",
    )
    listen.add_argument("--source", action="append", default=None, help="repeatable; default all")
    listen.add_argument(
        "--after",
        action="append",
        default=None,
        metavar="[SOURCE=]ID",
        help="resume after this caption id: ID for every source, SOURCE=ID for one "
        "(repeatable); default: the live tail",
    )
    listen.add_argument("--json", action="store_true", help="one JSON message per line")
    listen.add_argument("--limit", type=positive_int, default=None, help="exit after N captions")
    _token_flag(listen, "the server's access token, if it has one (better: SCENECAST_TOKEN)")
    listen.set_defaults(func=cmd_listen)

    fg = sub.add_parser("forget", help="remove sources and all they left in Redis")
    fg.add_argument("sources", nargs="+", metavar="SOURCE", help="source names, as listed")
    _redis_url(fg, required=True)
    fg.set_defaults(func=cmd_forget)

    st = sub.add_parser("status", help="workers and sources at a glance, read from Redis")
    _redis_url(st, required=True)
    st.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    st.set_defaults(func=cmd_status)


def _capture_config(args: argparse.Namespace) -> Any:
    from stream.capture.capture import CaptureConfig

    model_side = CaptureConfig.max_side  # the frames the model is given
    if 0 < args.preview_side < model_side:
        raise StreamError(
            f"--preview-side must be 0 (off) or at least {model_side} px, the size of the "
            f"frames the model is given; got {args.preview_side}"
        )
    return sampling_config(
        args, loop=args.loop, preview_side=args.preview_side, restart=args.restart
    )


def choice_argv(args: argparse.Namespace) -> list[str]:
    """``--consensus-k``, ``--ban-words`` and ``--hold`` for a worker process, those
    this command has and was given (``search_overrides`` reads the same flags
    in-process)."""
    argv = []
    bans = getattr(args, "ban_words", None)
    for flag, value in (
        ("--consensus-k", getattr(args, "consensus_k", None)),
        ("--ban-words", None if bans is None else ",".join(bans)),
        ("--hold", getattr(args, "hold", None)),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def worker_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        "--beam",
        str(args.beam),
        "--max-batch",
        str(args.max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--max-age-ms",
        str(args.max_age_ms),
    ]
    if args.checkpoint:
        argv += ["--checkpoint", args.checkpoint]
    argv += choice_argv(args)
    if args.device:
        argv += ["--device", args.device]
    # always, both ways: the worker process reads SCENECAST_* and --config too, and
    # must not take a setting there over what this command was told
    argv.append("--model-process" if args.model_process else "--no-model-process")
    argv += ["--decode", args.decode]
    return argv


def cmd_run(args: argparse.Namespace) -> int:
    from stream.run import RunConfig, run
    from stream.sources.probe import resolve_sources

    specs = resolve_sources(args.sources, args.name, live=args.live, loop=args.loop)
    config = RunConfig(
        sources=specs,
        capture=_capture_config(args),
        server=_server_config(args),
        redis_url=args.redis_url,
        worker_args=worker_argv(args),
    )
    return run(config, checkpoint=args.checkpoint, device=args.device)


def cmd_capture(args: argparse.Namespace) -> int:
    from stream.capture.service import run_capture
    from stream.sources.probe import resolve_sources

    (spec,) = resolve_sources(
        [args.source], [args.name] if args.name else None, live=args.live, loop=args.loop
    )
    config = _capture_config(args)  # a bad flag is told before Redis is tried
    return run_capture(args.redis_url, spec, config)


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.service import WorkerSettings, run_worker

    return run_worker(
        WorkerSettings(
            redis_url=args.redis_url,
            checkpoint=args.checkpoint,
            device=args.device,
            beam=args.beam,
            search=search_overrides(args),
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            max_age_ms=args.max_age_ms,
            model_process=args.model_process,
            decode=args.decode,
            exit_with_parent=args.exit_with_parent,
        )
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from stream.server.serve import serve_until_stopped

    return serve_until_stopped(args.redis_url, _server_config(args))


def cmd_listen(args: argparse.Namespace) -> int:
    from stream.clients.listen import After, run_listen

    return run_listen(
        args.url,
        sources=args.source,
        after=After.parse(args.after),
        as_json=args.json,
        limit=args.limit,
        token=args.token,
    )


def cmd_forget(args: argparse.Namespace) -> int:
    from stream.clients.forget import forget_and_say

    return forget_and_say(args.redis_url, args.sources)


def cmd_status(args: argparse.Namespace) -> int:
    from stream.clients.status import print_status

    return print_status(args.redis_url, as_json=args.json)


def demo_argv(args: argparse.Namespace) -> list[str]:
    """``demo`` is ``run`` on the bundled video, looped as a camera: its command line."""
    from stream.demo_video import demo_video_path

    return [
        "run",
        str(demo_video_path()),
        "--name",
        "demo",
        "--live",
        "--loop",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--compression",
        args.compression,
        *(["--token", args.token] if args.token else []),
        *(["--allow-origin", ",".join(args.allow_origin)] if args.allow_origin else []),
        *(["--allow-host", ",".join(args.allow_host)] if args.allow_host else []),
        *(["--tls-cert", args.tls_cert] if args.tls_cert else []),
        *(["--tls-key", args.tls_key] if args.tls_key else []),
        *worker_argv(args),
        *(["--config", args.config] if args.config else []),
    ]
