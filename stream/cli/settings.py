"""Settings of the service's commands from the environment and a config file.

Every option of ``run``, ``capture``, ``worker``, ``serve``, ``listen``, ``caption``,
``demo``, ``status`` and ``forget`` can be set in three places; the first that has it wins:

1. the command line: ``--max-batch 64``;
2. the environment: ``SCENECAST_MAX_BATCH=64`` (``SCENECAST_`` and the flag's name in
   upper case, ``-`` as ``_``); switches take 1/0, true/false, yes/no, on/off;
3. a TOML file named by ``--config FILE`` or ``SCENECAST_CONFIG``: keys at the top apply
   to every command that has the option, a ``[worker]`` table to that command only::

       redis_url = "redis://redis:6379/0"
       [worker]
       max_batch = 64
       model_process = true

then the built-in default. A value is checked as the flag's would be, and a bad one is
an error (exit 2) that says where it came from and what is accepted. So is a key the
file does not know: a typo would otherwise be ignored without a word. Unknown
``SCENECAST_`` variables are ignored (the environment is shared with other programs).
Repeatable flags (``--name``, ``--source``) and positional arguments are taken from the
command line only.

Pure logic: the caller passes the environment and the file's parsed contents.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.exceptions import StreamError

COMMANDS = ("run", "capture", "worker", "serve", "listen", "caption", "demo", "status", "forget")
ENV_PREFIX = "SCENECAST_"
CONFIG_ENV = "SCENECAST_CONFIG"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)


class SettingsError(StreamError):
    """A bad setting in the environment or the config file."""


def option_name(action: argparse.Action) -> str:
    """``--max-batch`` → ``max_batch``: the config key; the env var is its upper case."""
    flag = next(o for o in action.option_strings if o.startswith("--"))  # --x, not --no-x
    return flag.removeprefix("--").replace("-", "_")


def settable(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options of ``parser`` that the environment and the config file may set."""
    out = {}
    for action in parser._actions:
        takes_a_value = type(action) is argparse._StoreAction and action.nargs in (None, "?")
        if (
            not any(o.startswith("--") for o in action.option_strings)
            or action.help == argparse.SUPPRESS
            or not (takes_a_value or isinstance(action, _SWITCHES))
            or action.dest == "config"
        ):
            continue  # help, repeatable (append) and counting flags, positionals
        out[option_name(action)] = action
    return out


def split_config_flag(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """``--config FILE`` (or ``--config=FILE``, or an abbreviation down to ``--con``, as
    argparse would take it) anywhere in ``argv`` → (FILE, the rest)."""
    rest: list[str] = []
    path = None
    items = iter(argv)
    for arg in items:
        if arg == "--":
            rest += [arg, *items]
            break
        flag, eq, value = arg.partition("=")
        if len(flag) < len("--con") or not "--config".startswith(flag):
            rest.append(arg)
        elif eq:
            path = value
        else:
            path = next(items, None)
            if path is None:
                raise SettingsError("--config needs a file: --config FILE (a TOML file)")
    return path, rest


def load_config(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} not found (--config / {CONFIG_ENV})") from None
    except OSError as exc:
        raise SettingsError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None


def from_text(action: argparse.Action, text: str, where: str) -> Any:
    """A setting given as text (the environment) → the option's value."""
    if isinstance(action, _SWITCHES):
        word = text.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise SettingsError(
                f"{where}={text!r}: expected a switch: {'/'.join(TRUE_WORDS)} "
                f"or {'/'.join(FALSE_WORDS)}"
            )
        on = word in TRUE_WORDS
        return not on if isinstance(action, argparse._StoreFalseAction) else on
    return _converted(action, text, f"{where}={_shown(action, text)}")


def from_toml(action: argparse.Action, value: object, where: str) -> Any:
    """A setting from the config file (a TOML value) → the option's value."""
    if isinstance(action, _SWITCHES):
        if not isinstance(value, bool):
            raise SettingsError(f"{where} = {value!r}: expected true or false")
        return not value if isinstance(action, argparse._StoreFalseAction) else value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SettingsError(
            f"{where} = {_shown(action, value)}: expected a single value (a string or number)"
        )
    return _converted(action, str(value), f"{where} = {_shown(action, value)}")


def _shown(action: argparse.Action, value: object) -> str:
    """How an error quotes a setting: a secret's (``--token``) value never appears."""
    return "<hidden>" if getattr(action.type, "secret", False) else repr(value)


def _converted(action: argparse.Action, text: str, where: str) -> Any:
    value: Any = text
    if callable(action.type):
        try:
            value = action.type(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise SettingsError(f"{where}: {exc or 'not accepted'}") from None
    if action.choices is not None and value not in action.choices:
        accepted = ", ".join(map(str, action.choices))
        raise SettingsError(f"{where}: not one of the accepted values: {accepted}")
    return value


@dataclass(frozen=True)
class BadSetting:
    """The default of an option whose setting was bad: an error only if the command
    line does not give the option (the command line wins, even over a bad setting)."""

    error: SettingsError


def resolve(
    command: str,
    options: Mapping[str, argparse.Action],
    *,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    config_name: str = "the config file",
) -> dict[str, Any]:
    """The defaults for ``command`` (dest → value, or :class:`BadSetting`) that the
    environment and the config file set: the file's top level, then its ``[command]``
    table, then the environment."""
    out: dict[str, Any] = {}
    table = config.get(command, {})
    for scope, values in ((None, config), (command, table)):
        for key, value in values.items():
            name = key.replace("-", "_")
            if scope is None and (isinstance(value, dict) or name not in options):
                continue  # another command's table, or another command's option
            where = f"{config_name}: {f'[{scope}] ' if scope else ''}{key}"
            out[options[name].dest] = _or_bad(from_toml, options[name], value, where)
    for name, action in options.items():
        var = ENV_PREFIX + name.upper()
        if var in env:
            out[action.dest] = _or_bad(from_text, action, env[var], var)
    return out


def _or_bad(convert: Any, action: argparse.Action, value: Any, where: str) -> Any:
    try:
        return convert(action, value, where)
    except SettingsError as exc:
        return BadSetting(exc)


def check_parsed(args: argparse.Namespace) -> None:
    """Raise the error of a bad setting the command line did not override."""
    for value in vars(args).values():
        if isinstance(value, BadSetting):
            raise value.error


def check_config(
    config: Mapping[str, Any],
    options: Mapping[str, Mapping[str, Any]],
    config_name: str = "the config file",
) -> None:
    """Every key of the file names a command's table or an option, every key of a
    table an option of that command (``options``: command → its settable options)."""
    known = {name for per_command in options.values() for name in per_command}
    for key, value in config.items():
        if isinstance(value, dict):
            if key not in options:
                raise SettingsError(
                    f"{config_name}: [{key}] is not a command; "
                    f"tables accepted: {', '.join(options)}"
                )
            for inner in value:
                if inner.replace("-", "_") not in options[key]:
                    raise SettingsError(
                        f"{config_name}: [{key}] {inner} is not an option of {key}"
                        f"{_did_you_mean(inner, options[key])}; accepted: "
                        f"{', '.join(sorted(options[key]))}"
                    )
        elif key.replace("-", "_") not in known:
            raise SettingsError(
                f"{config_name}: {key} is not an option of any command ({', '.join(options)})"
                f"{_did_you_mean(key, known)}; see scenecast COMMAND --help"
            )


def _did_you_mean(key: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(key.replace("-", "_"), list(names), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
