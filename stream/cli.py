"""``scenecast``: one command, many subcommands.

The captioner's own subcommands (train, evaluate, describe) come from
``captioner.cli``; this module adds the service's and owns the entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import os
import platform
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captioner.arg_types import (
    beam_size,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
)
from captioner.cli import add_ban_words_flag, add_consensus_flag, add_hold_flag, search_overrides
from captioner.cli import add_subcommands as add_captioner_subcommands
from captioner.exceptions import CaptionerError
from stream.access import MIN_TOKEN_CHARS, access_token, allowed_hosts, allowed_origins
from stream.caption import SERVICE_BEAM, add_caption_subcommand
from stream.exceptions import StreamError
from stream.help_defaults import add_default_help
from stream.sampling_flags import add_sampling_flags, sampling_config
from stream.server import COMPRESSION
from stream.settings import (
    COMMANDS,
    CONFIG_ENV,
    SettingsError,
    check_config,
    check_parsed,
    load_config,
    resolve,
    settable,
    split_config_flag,
)
from worker.decode import DECODE_ON

if TYPE_CHECKING:
    from captioner.hold import ShownCaptions


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenecast", description="Streaming video description: frames in, captions out."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_captioner_subcommands(sub)

    demo = sub.add_parser(
        "demo", help="the live pipeline on the bundled demo video, looped as a camera (make run)"
    )
    _worker_flags(demo)
    _server_flags(demo)
    demo.set_defaults(func=cmd_demo)

    add_service_subcommands(sub)
    add_caption_subcommand(sub)

    bench = sub.add_parser("bench", help="benchmarks (figures go to BENCHMARKS.md)")
    what = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    bc = what.add_parser("captioner", help="images/s for batch × beam, end to end from uint8")
    bc.add_argument("--checkpoint", default=None, help="default: the bundled model")
    bc.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bc.add_argument("--batches", type=_int_list, default=[1, 8, 32])
    bc.add_argument("--beams", type=_int_list, default=[1, 3])
    bc.add_argument("--seconds", type=positive_float, default=3.0, help="minimum time per setting")
    bc.set_defaults(func=cmd_bench_captioner)
    bp = what.add_parser("pipeline", help="file-job captions/s and live latency through Redis")
    bp.add_argument("--checkpoint", default=None, help="default: the bundled model")
    bp.add_argument("--device", default=None)
    bp.add_argument("--batch", type=positive_int, default=32)
    bp.add_argument("--beam", type=beam_size, default=3)
    bp.add_argument("--frames", type=positive_int, default=192, help="frames in the file job")
    bp.add_argument("--live-seconds", type=positive_float, default=30.0)
    bp.add_argument("--rounds", type=positive_int, default=3, help="file-job rounds (median)")
    add_hold_flag(bp)
    bp.add_argument(
        "--model-process",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start the worker with --model-process (default: off, as the worker)",
    )
    bp.add_argument(
        "--decode",
        choices=DECODE_ON,
        default="device",
        help="start the worker with this --decode (default: device, as the worker)",
    )
    bp.add_argument(
        "--stand-in-ms",
        type=positive_float,
        default=None,
        metavar="MS",
        help="file job only, the model replaced by a stand-in taking MS per batch: "
        "the pipeline's own ceiling for a model of that speed",
    )
    bp.set_defaults(func=cmd_bench_pipeline)
    bs = what.add_parser("server", help="websocket fan-out: clients one server process feeds")
    bs.add_argument("--clients", type=_int_list, default=[1, 10, 100, 300])
    bs.add_argument("--rate", type=positive_float, default=30.0, help="captions/s published")
    bs.add_argument("--sources", type=positive_int, default=4)
    bs.add_argument("--seconds", type=positive_float, default=10.0, help="per row")
    bs.add_argument("--compression", choices=COMPRESSION, default="none")
    bs.set_defaults(func=cmd_bench_server)
    bcap = what.add_parser("caption", help="realtime factor of `scenecast caption` on a long video")
    bcap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    bcap.add_argument("--device", default=None)
    bcap.add_argument("--minutes", type=positive_float, default=10.0)
    bcap.add_argument("--beam", type=beam_size, default=3)
    bcap.add_argument("--batch", type=positive_int, default=16)
    add_hold_flag(bcap)
    bcap.add_argument(
        "--workers", type=positive_int, default=2, help="worker processes for --redis-url"
    )
    bcap.add_argument(
        "--video",
        type=Path,
        default=None,
        help="use this video (its length must match --minutes) instead of making one",
    )
    bcap.set_defaults(func=cmd_bench_caption)

    commands = _subcommands(parser)
    for name in COMMANDS:
        commands[name].add_argument(
            "--config",
            metavar="FILE",
            help=f"TOML file of settings (env {CONFIG_ENV}); any option may also come from "
            "the environment, e.g. SCENECAST_MAX_BATCH=64; the command line wins",
        )
    add_default_help(parser)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> argparse.Namespace:
    """The command line, over the environment and the config file (``stream.settings``);
    SettingsError for a bad setting, SystemExit(2) for a bad flag (argparse)."""
    config_path, rest = split_config_flag(argv)
    parser = build_parser()
    commands = _subcommands(parser)
    command = next((a for a in rest if not a.startswith("-")), None)
    if config_path is not None and command in commands and command not in COMMANDS:
        raise SettingsError(f"--config applies to the service's commands: {', '.join(COMMANDS)}")
    config_path = config_path or env.get(CONFIG_ENV) or None
    if command in COMMANDS:
        options = {name: settable(commands[name]) for name in COMMANDS}
        config = load_config(config_path) if config_path else {}
        check_config(config, options, config_path or "")
        defaults = resolve(
            command, options[command], env=env, config=config, config_name=config_path or ""
        )
        commands[command].set_defaults(**defaults)
        for action in options[command].values():
            if action.dest in defaults:
                action.required = False
    args, unknown = parser.parse_known_args(rest)
    if unknown:  # said by the command's parser: its usage, and the flag that was meant
        (commands.get(command or "") or parser).error(
            unrecognized(unknown, commands.get(command or ""))
        )
    check_parsed(args)
    args.config = config_path
    return args


def unrecognized(extra: Sequence[str], command: argparse.ArgumentParser | None) -> str:
    """argparse's "unrecognized arguments" with, for a mistyped flag, the closest one
    the command has (``--fsp`` → ``--fps``)."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    if command is None:
        return message
    flags = [f for a in command._actions for f in a.option_strings if f.startswith("--")]
    for token in extra:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.split("=", 1)[0], flags, n=1, cutoff=0.6)
            if close:
                return f"{message} (did you mean {close[0]}?)"
    return message


def _redis_url(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--redis-url",
        default=None,
        required=required,  # unless the environment or --config sets it (stream.settings)
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
        type=allowed_origins,
        default=(),
        metavar="ORIGINS",
        help="pages of other sites that may open the websocket, e.g. "
        "https://dash.example.com (comma-separated; * for any); pages this server "
        "serves always may (default: none)",
    )
    p.add_argument(
        "--allow-host",
        type=allowed_hosts,
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
    from stream.server import ServerConfig
    from stream.tls import server_tls_context

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
    p.add_argument("--token", type=access_token, default=None, metavar="TOKEN", help=help)


def add_service_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        default="ws://127.0.0.1:8765/ws",  # stream.listen.DEFAULT_URL
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


def _sources(args: argparse.Namespace, texts: list[str], names: list[str] | None) -> list[Any]:
    from stream.sources import parse_source

    if names is not None and len(names) != len(texts):
        raise StreamError(
            f"--name given {len(names)} times for {len(texts)} sources; "
            "give one per source, in order, or none"
        )
    specs = []
    for i, text in enumerate(texts):
        live = True if args.live else None
        specs.append(parse_source(text, name=names[i] if names else None, live=live))
    if len({s.name for s in specs}) != len(specs):
        raise StreamError("two sources have the same name; set them apart with --name")
    if args.loop and not args.live:
        raise StreamError("--loop needs --live (a looped file is played as a camera)")
    for i, spec in enumerate(specs):
        recording = probe(spec)
        if spec.kind == "file":
            continue
        if args.loop and not recording:
            raise StreamError(
                f"--loop is for recordings; {spec.display} is a live {spec.kind} stream"
            )
        if recording and not args.live:
            # a clip at a URL (https://host/clip.mp4) is a job like a file, not a stream
            # read as fast as it downloads whose end looks like a lost camera
            specs[i] = dataclasses.replace(spec, live=False)
            print(
                f"scenecast: {spec.display} is a recording: captioned as a file job "
                "(every sampled frame, then 'ended'); --live plays it as a camera",
                file=sys.stderr,
            )
    return specs


def probe(spec: Any) -> bool:
    """Open a source once before starting: a bad file or URL is an error now, not a
    reconnect loop later (a live source that fails after a good start is retried).
    Returns whether it is a recording (``stream.sources.is_recording``)."""
    import threading

    from stream.sources import grab_first, is_recording, open_capture
    from stream.stoppable_call import call_unless_stopped

    # in a thread: Ctrl+C (KeyboardInterrupt in the wait) need not wait out the open
    # timeout of a camera that takes the connection and sends nothing
    capture = call_unless_stopped(
        lambda: open_capture(spec, open_timeout_ms=5000, read_timeout_ms=5000),
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


def _capture_config(args: argparse.Namespace) -> Any:
    from stream.capture import CaptureConfig

    model_side = CaptureConfig.max_side  # the frames the model is given
    if 0 < args.preview_side < model_side:
        raise StreamError(
            f"--preview-side must be 0 (off) or at least {model_side} px, the size of the "
            f"frames the model is given; got {args.preview_side}"
        )
    return sampling_config(args, loop=args.loop, preview_side=args.preview_side)


def _choice_argv(args: argparse.Namespace) -> list[str]:
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


def _worker_argv(args: argparse.Namespace) -> list[str]:
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
    argv += _choice_argv(args)
    if args.device:
        argv += ["--device", args.device]
    # always, both ways: the worker process reads SCENECAST_* and --config too, and
    # must not take a setting there over what this command was told
    argv.append("--model-process" if args.model_process else "--no-model-process")
    argv += ["--decode", args.decode]
    return argv


def cmd_run(args: argparse.Namespace) -> int:
    from captioner.default_model import default_weights_path
    from stream.run import RunConfig, Runner

    specs = _sources(args, args.sources, args.name)
    capture = _capture_config(args)
    server = _server_config(args)
    # fail now, with a clear message, rather than in the worker process; the bundled
    # model is not loaded here only to be loaded again by the worker (2-3 s on a CPU)
    if args.device is not None:
        from captioner.api import resolve_device

        resolve_device(args.device)
    if args.checkpoint is not None or not default_weights_path().is_file():
        from captioner.api import Captioner

        Captioner.load(args.checkpoint, device="cpu")
    config = RunConfig(
        sources=specs,
        capture=capture,
        server=server,
        redis_url=args.redis_url,
        worker_args=_worker_argv(args),
    )
    return Runner(config).run()


def cmd_capture(args: argparse.Namespace) -> int:
    from stream.capture import Capture
    from stream.embedded_redis import check_redis

    (spec,) = _sources(args, [args.source], [args.name] if args.name else None)
    config = _capture_config(args)  # a bad flag is told before Redis is tried
    capture = Capture(check_redis(args.redis_url), spec, config)
    signals = 0

    def on_signal(signum: int, frame: object) -> None:
        """Ctrl+C as SIGTERM: stop, so the last state said is "ended" (interrupted
        here, the capture said "live" to the end and was then shown as gone silent);
        a second one: at once."""
        nonlocal signals
        signals += 1
        if signals > 1:
            raise KeyboardInterrupt
        capture.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        capture.run()
    except KeyboardInterrupt:
        capture.stop()
        return 130
    return 1 if capture.redis_data_lost and not spec.live else 0  # said in the log


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from captioner.api import Captioner, resolve_device
    from stream.embedded_redis import check_redis
    from worker.batching import BatchPolicy
    from worker.decode import decode_device
    from worker.model_process import ModelProcess
    from worker.service import serve_worker
    from worker.worker import WorkerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = resolve_device(args.device)
    check_redis(args.redis_url).close()  # before the model loads: a clear error, exit 2
    policy = BatchPolicy(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_age_ms=args.max_age_ms
    )
    if args.model_process:
        with contextlib.closing(
            ModelProcess(
                args.checkpoint,
                device=str(device),
                beam=args.beam,
                search=search_overrides(args),
                max_batch=args.max_batch,
                decode_on=args.decode,
            )
        ) as model:
            config = WorkerConfig(
                policy=policy,
                model=model.model_id,
                fit=model.fit,
                device=model.device,
                model_decodes=True,
            )
            serve_worker(args.redis_url, model, config, parent_pid=args.exit_with_parent)
        return 0
    cap = Captioner.load(args.checkpoint, device=device)
    cap.override(search_overrides(args))
    if cap.device.type == "cuda":
        cap.warm_up(args.max_batch)
    beam = args.beam

    def caption(images: Sequence[Any], sources: Sequence[str], shown: ShownCaptions) -> Any:
        return cap.caption(list(images), beam=beam, sources=sources, shown=shown)

    config = WorkerConfig(
        policy=policy,
        model=cap.model_id,
        fit=cap.fit,
        device=decode_device(args.decode, str(cap.device)),
    )
    serve_worker(args.redis_url, caption, config, parent_pid=args.exit_with_parent)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from stream.embedded_redis import check_redis
    from stream.server import CaptionServer
    from stream.server_config import announce

    config = _server_config(args)
    check_redis(args.redis_url).close()

    async def main() -> None:
        # SIGTERM (docker stop, systemd, Kubernetes) as Ctrl+C: the server closes each
        # connection as going away (1001), not with an internal error (1011) from a
        # SystemExit raised inside the event loop
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with CaptionServer(args.redis_url, config) as s:
            announce(config, s.port)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from stream.listen import After, run_listen

    return run_listen(
        args.url,
        sources=args.source,
        after=After.parse(args.after),
        as_json=args.json,
        limit=args.limit,
        token=args.token,
    )


def cmd_forget(args: argparse.Namespace) -> int:
    from stream.embedded_redis import check_redis
    from stream.source_keys import forget_sources

    client = check_redis(args.redis_url)
    try:
        for source, n in forget_sources(client, args.sources):
            print(f"scenecast: forgot {source} ({n} keys)")
    finally:
        client.close()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from stream.embedded_redis import check_redis
    from stream.status_report import format_report, read_snapshot, report_json
    from worker.redis_clock import RedisClock

    client = check_redis(args.redis_url)
    try:
        clock = RedisClock()  # heartbeats are in Redis's time (worker/redis_clock.py)
        clock.sync(client)
        snapshot = read_snapshot(client, now_ms=clock.now_ms())
    finally:
        client.close()
    print(
        report_json(snapshot) if args.json else format_report(snapshot),
        end="\n" if args.json else "",
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stream.demo_video import demo_video_path

    argv = [
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
        *_worker_argv(args),
        *(["--config", args.config] if args.config else []),
    ]
    run_args = parse_args(argv, os.environ)
    code: int = run_args.func(run_args)
    return code


def _host_line() -> str:
    """The machine a benchmark with no model ran on, for its first line."""
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _bench_context(cap: Any) -> str:
    """The model and machine a benchmark ran on, for its first line."""
    import torch

    where = (
        torch.cuda.get_device_name(cap.device)
        if cap.device.type == "cuda"
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    search = cap.search_config
    hold = "off" if search.hold_margin is None else f"{search.hold_margin:g}"
    choice = f"consensus k={search.consensus_k}, hold {hold}"
    return f"model {cap.model_id} ({choice}), {where}, torch {torch.__version__}"


def cmd_bench_server(args: argparse.Namespace) -> int:
    from stream.bench_server import run_bench

    print(f"scenecast bench server — {_host_line()}, Python {platform.python_version()}")
    print(
        run_bench(
            clients=args.clients,
            rate=args.rate,
            sources=args.sources,
            seconds=args.seconds,
            compression=args.compression,
        )
    )
    return 0


def cmd_bench_captioner(args: argparse.Namespace) -> int:

    from captioner.api import Captioner
    from captioner.bench import bench_captioner, format_rows

    cap = Captioner.load(args.checkpoint, device=args.device)
    print(f"scenecast bench captioner — {_bench_context(cap)}")
    rows = bench_captioner(cap, batches=args.batches, beams=args.beams, min_seconds=args.seconds)
    print(format_rows(rows))
    for beam in args.beams:
        by_batch = {r.batch: r.images_per_s for r in rows if r.beam == beam}
        if 1 in by_batch and len(by_batch) > 1:
            top = max(by_batch)
            print(f"beam {beam}: batch {top} = {by_batch[top] / by_batch[1]:.2f}× batch 1")
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    if args.stand_in_ms is not None:
        from stream.bench_stand_in import run_stand_in_bench

        print(f"scenecast bench pipeline — stand-in model, {_host_line()}")
        print(
            run_stand_in_bench(
                ms=args.stand_in_ms, batch=args.batch, frames=args.frames, rounds=args.rounds
            )
        )
        return 0

    from captioner.api import Captioner
    from stream.bench_pipeline import run_bench

    cap = Captioner.load(args.checkpoint, device=args.device)
    cap.override(search_overrides(args))
    worker_args = ["--model-process"] if args.model_process else []
    worker_args += ["--decode", args.decode, *_choice_argv(args)]
    print(f"scenecast bench pipeline — {_bench_context(cap)}; worker {' '.join(worker_args)}")
    print(
        run_bench(
            cap,
            batch=args.batch,
            beam=args.beam,
            frames=args.frames,
            seconds=args.live_seconds,
            checkpoint=args.checkpoint,
            rounds=args.rounds,
            worker_args=worker_args,
        )
    )
    return 0


def cmd_bench_caption(args: argparse.Namespace) -> int:

    from captioner.api import Captioner
    from stream.bench_caption import run_bench

    cap = Captioner.load(args.checkpoint, device=args.device)
    cap.override(search_overrides(args))
    print(f"scenecast bench caption — {_bench_context(cap)}")
    print(
        run_bench(
            cap,
            minutes=args.minutes,
            beam=args.beam,
            batch=args.batch,
            workers=args.workers,
            checkpoint=args.checkpoint,
            video=args.video,
            worker_args=_choice_argv(args),
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl+C before a command's own handling (imports, probes)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our errors say it better
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    except SettingsError as exc:
        print(f"scenecast: error: {exc}", file=sys.stderr)
        return 2
    with _sigterm_exits():
        try:
            code: int = args.func(args)
            return code
        except (CaptionerError, StreamError) as exc:
            print(f"scenecast: error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `scenecast caption v.mp4 | head`: the reader is done
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error flushing at exit
            return 0
        except Exception as exc:
            import redis  # not at the top: the CLI's start stays light

            if not isinstance(exc, redis.ConnectionError):
                raise
            # Redis gone between a command's check and its use (a worker's model load)
            print(f"scenecast: error: lost Redis: {exc}", file=sys.stderr)
            return 2


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit(143), so ``with`` blocks clean up (an embedded Redis
    stops, a half-written output is removed) instead of the process vanishing. Commands
    that drain on SIGTERM (run, capture, worker) install their own handler over it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
