"""worker/bus: the contract's pieces agree with each other and with the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioner.preprocess import MIN_IMAGE_SIDE
from worker.bus import keys, scripts
from worker.bus.entries import MIN_FRAME_SIDE
from worker.bus.exceptions import EntryError
from worker.bus.names import check_source, is_source_name
from worker.bus.publish import FLUSH_LUA, PUBLISH_LUA


def test_workers_refuse_exactly_the_frames_the_model_cannot_take() -> None:
    assert MIN_FRAME_SIDE == MIN_IMAGE_SIDE


@pytest.mark.parametrize(
    "name",
    ["cam0", "a" * 64, "front-door.cam_2", "", "a" * 65, "cam 0", "cam/0", "cam0\n", "é"],
)
def test_one_source_name_rule_everywhere(name: str) -> None:
    good = is_source_name(name)
    assert good == (0 < len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "_.-")
                                                 for c in name))  # fmt: skip
    if good:
        assert check_source(name) == name
    else:
        with pytest.raises(EntryError, match="bad source name"):
            check_source(name)


def test_every_key_of_a_source_carries_its_hash_tag_and_gives_it_back() -> None:
    names = keys.source_keys("cam0")
    assert len(set(names)) == len(names) == 11
    for key in names:
        assert key.endswith(":{cam0}") and keys.source_of_key(key) == "cam0"
    with pytest.raises(EntryError):
        keys.frames_key("not a name")


def test_every_lua_file_is_read_and_each_script_is_whole() -> None:
    folder = Path(scripts.__file__).parent / "lua"
    names = sorted(p.stem for p in folder.glob("*.lua"))
    assert names == sorted(
        ["flush", "lease_release", "lease_renew", "leave", "publish", "publish_functions",
         "shown", "takeover"]
    )  # fmt: skip
    for name in names:
        text = scripts.lua(name)
        lines = text.splitlines()
        assert lines[0].startswith("-- ")  # what it takes and returns
        assert any(line and not line.startswith("--") for line in lines)  # then the Lua
    for script in (PUBLISH_LUA, FLUSH_LUA):  # the shared functions come first
        assert script.startswith(scripts.lua("publish_functions"))
