"""docker/: every container's command line parses as the CLI takes it, with the
environment compose gives it (no Docker here: the files are checked against the code)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.cli.main import parse_args

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
OURS = {name: s for name, s in COMPOSE["services"].items() if "build" in s}
TOKEN = "t" * 24  # what a user exports as SCENECAST_TOKEN


def _substituted(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message} with the user's environment."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":?":
            raise AssertionError(f"{name} must be set: {rest}")
        return rest

    return re.sub(r"\$\{(\w+)(:-|:\?)([^}]*)\}", one, value)


def _argv_and_env(
    service: dict[str, Any], user: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    argv = [_substituted(str(a), user) for a in service["command"]]
    env = {k: _substituted(str(v), user) for k, v in (service.get("environment") or {}).items()}
    return argv, env


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_service_command_parses_with_its_environment(name: str) -> None:
    argv, env = _argv_and_env(OURS[name], {"SCENECAST_TOKEN": TOKEN})
    args = parse_args(argv, env)
    assert args.func is not None
    # a crash, a reboot: back up; but a capture only after a failure: a file job that
    # ended (exit 0) and ran again would append its captions a second time
    expected = "on-failure" if name == "capture" else "unless-stopped"
    assert OURS[name].get("restart") == expected


def test_the_capture_plays_the_demo_in_the_image_and_takes_a_camera() -> None:
    """By default the video the image holds (nothing needs mounting), looped as a
    camera; a camera URL with SCENECAST_LOOP=0, as the file's comment says."""
    argv, env = _argv_and_env(OURS["capture"], {})
    source = argv[1]
    assert source.startswith("/app/") and (ROOT / source.removeprefix("/app/")).is_file()
    dockerfile = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    assert "WORKDIR /app" in dockerfile and "COPY stream stream" in dockerfile
    args = parse_args(argv, env)
    assert args.live and args.loop
    camera = {"SCENECAST_SOURCE": "rtsp://cam.local/live", "SCENECAST_LOOP": "0"}
    argv, env = _argv_and_env(OURS["capture"], camera)
    args = parse_args(argv, env)
    assert args.source == "rtsp://cam.local/live" and args.live and not args.loop


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_each_images_default_command_parses(dockerfile: str) -> None:
    text = (ROOT / "docker" / dockerfile).read_text()
    (entry,) = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.M)
    assert json.loads(entry) == ["scenecast"]
    assert parse_args(json.loads(cmd), {"SCENECAST_REDIS_URL": "redis://r:6379/0"}).func
    # the torch the Makefile pins, which installs here and is what the tests ran on
    assert "torch==2.14.1 torchvision==0.29.1" in text


def test_the_build_context_leaves_out_the_local_environment() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)
