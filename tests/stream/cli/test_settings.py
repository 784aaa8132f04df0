"""Settings from the environment and a config file, under the command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli.main import parse_args
from stream.cli.settings import SettingsError, split_config_flag

ENV: dict[str, str] = {}


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenecast.toml"
    path.write_text(text)
    return str(path)


def test_the_command_line_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        'redis_url = "redis://file:6379/0"\nbeam = 2\nport = 9000\n'
        "[worker]\nmax_batch = 48\nmax-wait-ms = 20\nmodel_process = true\n",
    )
    env = {"SCENECAST_MAX_BATCH": "64", "SCENECAST_DECODE": "cpu"}
    args = parse_args(["worker", "--config", path, "--beam", "5"], env)
    assert args.redis_url == "redis://file:6379/0"  # the file's top level
    assert args.max_batch == 64  # the environment over the file's [worker]
    assert args.max_wait_ms == 20.0  # "max-wait-ms" and "max_wait_ms" both name it
    assert args.model_process is True
    assert args.decode == "cpu"
    assert args.beam == 5  # the command line over the file
    assert args.config == path
    # a top-level key applies to every command that has the option; [worker] to worker only
    serve = parse_args(["serve"], {"SCENECAST_CONFIG": path})
    assert (serve.redis_url, serve.port) == ("redis://file:6379/0", 9000)
    run = parse_args(["run", "clip.mp4", "--config", path], ENV)
    assert (run.beam, run.max_batch, run.model_process) == (2, 32, False)


def test_switches_from_the_environment_both_ways() -> None:
    on = parse_args(["run", "x.mp4"], {"SCENECAST_LIVE": "yes", "SCENECAST_MODEL_PROCESS": "1"})
    assert (on.live, on.model_process) == (True, True)
    off = parse_args(["run", "x.mp4"], {"SCENECAST_MODEL_PROCESS": "off"})
    assert off.model_process is False
    flag = parse_args(["run", "x.mp4", "--model-process"], {"SCENECAST_MODEL_PROCESS": "no"})
    assert flag.model_process is True


def test_a_required_flag_may_come_from_the_environment() -> None:
    args = parse_args(["capture", "0"], {"SCENECAST_REDIS_URL": "redis://r:6379/0"})
    assert args.redis_url == "redis://r:6379/0"
    with pytest.raises(SystemExit):  # and without it, still required
        parse_args(["capture", "0"], ENV)


def test_other_commands_ignore_service_settings() -> None:
    env = {"SCENECAST_BEAM": "nine", "SCENECAST_CONFIG": "missing.toml"}
    args = parse_args(["describe", "a.jpg"], env)  # neither is read: no error
    assert args.beam == parse_args(["describe", "a.jpg"], ENV).beam


@pytest.mark.parametrize(
    ("env", "text", "message"),
    [
        ({"SCENECAST_MAX_AGE_MS": "-1"}, "", "SCENECAST_MAX_AGE_MS='-1': expected a positive"),
        ({"SCENECAST_MAX_BATCH": "0"}, "", "SCENECAST_MAX_BATCH='0': expected a positive integer"),
        ({"SCENECAST_DECODE": "gpu"}, "", "accepted values: device, cpu"),
        ({"SCENECAST_MODEL_PROCESS": "maybe"}, "", "expected a switch: 1/true/yes/on"),
        ({}, "[worker]\nmax_bach = 3\n", "max_bach is not an option of worker (did you mean"),
        ({}, "[wroker]\nbeam = 3\n", "[wroker] is not a command; tables accepted: run, capture"),
        ({}, "fsp = 3\n", "fsp is not an option of any command"),
        ({}, "[worker]\nmax_batch = 0\n", "[worker] max_batch = 0: expected a positive integer"),
        ({}, "[worker]\nmodel_process = 1\n", "model_process = 1: expected true or false"),
        ({}, "[worker]\nbeam = [3]\n", "expected a single value"),
        ({}, "beam = ", "is not valid TOML"),
    ],
)
def test_bad_settings_say_where_they_came_from_and_what_is_accepted(
    tmp_path: Path, env: dict[str, str], text: str, message: str
) -> None:
    argv = ["worker", "--redis-url", "redis://r:6379/0"]
    if text:
        argv += ["--config", _config(tmp_path, text)]
    with pytest.raises(SettingsError) as err:
        parse_args(argv, env)
    assert message in str(err.value)
    if text:
        assert str(tmp_path / "scenecast.toml") in str(err.value)


def test_the_command_line_overrides_even_a_bad_setting(tmp_path: Path) -> None:
    env = {"SCENECAST_PORT": "tcp://10.0.0.5:8765"}  # as Kubernetes sets for a Service
    args = parse_args(["serve", "--redis-url", "redis://r:6379/0", "--port", "9000"], env)
    assert args.port == 9000
    path = _config(tmp_path, "[worker]\nmax_batch = 0\n")
    args = parse_args(["worker", "--redis-url", "r", "--config", path, "--max-batch", "8"], ENV)
    assert args.max_batch == 8
    with pytest.raises(SettingsError, match=re.escape("SCENECAST_PORT='tcp://10.0.0.5:8765'")):
        parse_args(["serve", "--redis-url", "redis://r:6379/0"], env)


def test_config_flag_abbreviated_or_misplaced(tmp_path: Path) -> None:
    path = _config(tmp_path, "[worker]\nmax_batch = 7\n")
    for flag in (["--conf", path], [f"--con={path}"]):
        assert parse_args(["worker", "--redis-url", "r", *flag], ENV).max_batch == 7
    with pytest.raises(SettingsError, match="--config applies to the service's commands"):
        parse_args(["describe", "a.jpg", "--config", path], ENV)


def test_split_config_flag() -> None:
    assert split_config_flag(["worker", "--config", "a.toml", "--beam", "2"]) == (
        "a.toml",
        ["worker", "--beam", "2"],
    )
    assert split_config_flag(["--config=b.toml", "serve"]) == ("b.toml", ["serve"])
    assert split_config_flag(["run", "--", "--config"]) == (None, ["run", "--", "--config"])
    with pytest.raises(SettingsError, match="--config needs a file"):
        split_config_flag(["worker", "--config"])


@pytest.mark.integration
def test_a_bad_setting_exits_2_with_the_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "serve", "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"config file {missing} not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_the_access_token_and_origins_come_from_anywhere_and_a_bad_token_stays_hidden(
    tmp_path: Path,
) -> None:
    token = "from-the-environment-0123"
    serve = ["serve", "--redis-url", "redis://r:6379/0"]
    args = parse_args(serve, {"SCENECAST_TOKEN": token})
    assert args.token == token and args.allow_origin == ()
    path = _config(tmp_path, '[serve]\ntoken = "from-the-file-0123456789"\nallow_origin = "*"\n')
    args = parse_args([*serve, "--config", path], ENV)
    assert (args.token, args.allow_origin) == ("from-the-file-0123456789", ("*",))
    assert parse_args(["listen"], {"SCENECAST_TOKEN": token}).token == token
    for env in ({"SCENECAST_TOKEN": "hunter2"}, {"SCENECAST_TOKEN": "with a space in it!!"}):
        with pytest.raises(SettingsError) as err:
            parse_args(serve, env)
        assert "SCENECAST_TOKEN=<hidden>" in str(err.value)
        assert env["SCENECAST_TOKEN"] not in str(err.value)
    with pytest.raises(SettingsError, match="is not an origin"):
        parse_args(serve, {"SCENECAST_ALLOW_ORIGIN": "https://a.example/app"})
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", *serve, "--token", "hunter2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "at least 16 characters" in result.stderr
    assert "hunter2" not in result.stderr
