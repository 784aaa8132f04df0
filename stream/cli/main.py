"""``scenecast``: one command, many subcommands.

The captioner's own subcommands (train, evaluate, describe) come from
``stream.cli.model``, the service's from ``stream.cli.service``, ``caption`` from
``stream.cli.caption`` and ``bench`` from ``stream.cli.bench``; this module puts them
together, reads the settings (``stream.cli.settings``) and owns the entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence

from captioner.exceptions import CaptionerError
from stream.cli.bench import add_bench_subcommand
from stream.cli.caption import add_caption_subcommand
from stream.cli.help_defaults import add_default_help
from stream.cli.model import add_subcommands as add_captioner_subcommands
from stream.cli.service import add_service_subcommands
from stream.cli.settings import (
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
from stream.exceptions import StreamError
from worker.bus.exceptions import BusError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenecast", description="Streaming video description: frames in, captions out."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_captioner_subcommands(sub)
    add_service_subcommands(sub)
    add_caption_subcommand(sub)
    add_bench_subcommand(sub)

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
    """The command line, over the environment and the config file (``stream.cli.settings``);
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
    if getattr(args, "expands_to", None) is not None:  # demo: a run, from its own flags
        return parse_args(args.expands_to(args), env)
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
        except (CaptionerError, StreamError, BusError) as exc:
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
