"""The captioner's commands, end to end on a generated dataset, and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli.main import main
from tests.support.datasets import make_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = make_dataset(tmp_path_factory.mktemp("data"), n_train=12, n_val=4)
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    code = main(
        [
            "train",
            "--data",
            str(root),
            "--out",
            str(out),
            "--cache",
            str(cache),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--dims",
            "16",
            "16",
            "16",
            "--min-freq",
            "1",
            "--log-every",
            "1",
        ]
    )
    assert code == 0
    return root, out, cache


def test_train_writes_checkpoints_and_a_log(trained: tuple[Path, Path, Path]) -> None:
    _, out, cache = trained
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert (out / "model-fp16.pt").stat().st_size < (out / "best.pt").stat().st_size
    log = (out / "train.log").read_text()
    assert "12 train / 4 val images" in log
    assert "epoch 2 done" in log and "ETA" in log
    # features were cached: the original and the flipped train images, and val
    names = sorted(p.name for p in (cache / "efficientnet_lite0-224").glob("*.npy"))
    assert names == ["train-flip.npy", "train.npy", "val.npy"]


def test_evaluate_prints_a_table_and_writes_json(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out, cache = trained
    report = tmp_path / "eval.json"
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--split",
            "val",
            "--beam",
            "3",
            "--checkpoint",
            str(out / "best.pt"),
            "--cache",
            str(cache),
            "--json",
            str(report),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| system | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D |" in printed
    data = json.loads(report.read_text())
    assert data["images"] == 4
    (system,) = data["systems"].values()
    assert set(system["scores"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D"}
    assert len(system["captions"]) == 4


def test_flags_too_big_for_a_small_dataset_are_clear_errors(
    trained: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """12 training images: the defaults --knn-k 30 and --dims 128 were tracebacks."""
    root, out, cache = trained
    common = ["--data", str(root), "--checkpoint", str(out / "best.pt"), "--cache", str(cache)]
    cases = [
        (["evaluate", *common, "--baseline", "knn"], "--knn-k 30: ", "accepted here: 1 to 12"),
        (["evaluate", *common, "--baseline", "knn", "--split", "train", "--knn-k", "12"],
         "--knn-k 12: ", "accepted here: 1 to 11"),
        (["neighbours", *common], "--dims 128: ", "accepted here: 1 to 12"),
    ]  # fmt: skip
    for argv, flag, accepted in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert flag in err and accepted in err and "Traceback" not in err, err


def test_describe_captions_image_files(
    trained: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, out, _ = trained
    images = sorted((root / "images").glob("*.jpg"))[:2]
    code = main(["describe", *map(str, images), "--checkpoint", str(out / "best.pt")])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [p.name for p in images]


def _halves(path: Path) -> Path:
    """A 64x32 JPEG, left half red and right half blue, stored with EXIF orientation 6
    (a phone held upright: shown turned 90 degrees clockwise)."""
    from PIL import Image

    image = Image.new("RGB", (64, 32), (220, 20, 20))
    image.paste((20, 20, 220), (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    image.save(path, exif=exif.tobytes(), quality=95)
    return path


def test_images_are_read_upright_as_their_exif_orientation_says(tmp_path: Path) -> None:
    from captioner.sample_photos import load_rgb

    rgb = load_rgb(_halves(tmp_path / "phone.jpg"))
    assert rgb.shape == (64, 32, 3)  # turned: taller than wide
    assert rgb[8, 16, 0] > 150 and rgb[56, 16, 2] > 150  # left half on top, right below


def test_an_image_over_pillows_pixel_limit_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # the 64x32 image is over twice it
    code = main(["describe", str(_halves(tmp_path / "big.jpg"))])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("scenecast: error: cannot read image") and "big.jpg" in err


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_bad_input_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    missing = _run("describe", str(tmp_path / "nope.jpg"))
    assert missing.returncode == 2
    assert "cannot read image" in missing.stderr and "nope.jpg" in missing.stderr
    (tmp_path / "captions.json").write_text("{not json")
    bad = _run("evaluate", "--data", str(tmp_path), "--checkpoint", str(tmp_path / "x.pt"))
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    flag = _run("bench", "captioner", "--batches", "0,2")
    assert flag.returncode == 2 and "positive integers" in flag.stderr
    unknown = _run("train", "--data", str(tmp_path), "--epochs", "many")
    assert unknown.returncode == 2 and "positive integer" in unknown.stderr
    ngram = _run("describe", "x.jpg", "--no-repeat-ngram", "-1")
    assert ngram.returncode == 2 and "expected an integer >= 0, got -1" in ngram.stderr
    penalty = _run("describe", "x.jpg", "--length-penalty", "nan")
    assert penalty.returncode == 2 and "expected a number from -10 to 10, got nan" in penalty.stderr


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], False), (["--no-repeat-words"], True), (["--repeat-words"], False)],
)
def test_search_flags_override_the_models_settings(flags: list[str], expected: bool) -> None:
    from captioner.search.search import SearchConfig
    from stream.cli.main import build_parser
    from stream.cli.model import _search_config

    args = build_parser().parse_args(["describe", "x.jpg", "--beam", "1", *flags])
    stored = SearchConfig(beam=3, length_penalty=0.5, no_repeat_ngram=2)
    config = _search_config(args, stored)
    assert config.no_repeat_words is expected
    assert (config.method, config.beam, config.length_penalty) == ("greedy", 1, 0.5)
    on = _search_config(args, SearchConfig(no_repeat_words=True, banned_words=("stock",)))
    assert on.no_repeat_words is (flags != ["--repeat-words"])
    assert on.banned_words == ("stock",)  # kept unless --ban-words is given
    parse = build_parser().parse_args
    assert _search_config(parse(["describe", "x.jpg", "--ban-words", "a,b"]), on).banned_words == (
        "a",
        "b",
    )
    assert _search_config(parse(["describe", "x.jpg", "--ban-words", ""]), on).banned_words == ()


def test_sigterm_becomes_system_exit_so_with_blocks_clean_up() -> None:
    import os
    import signal

    from stream.cli.main import _sigterm_exits

    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(SystemExit) as caught, _sigterm_exits():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode
            pytest.fail("SIGTERM did not raise SystemExit")
        finally:
            cleaned.append(True)
    assert caught.value.code == 128 + signal.SIGTERM and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_run_passes_model_process_to_its_worker_both_ways() -> None:
    from stream.cli.main import build_parser, parse_args
    from stream.cli.service import worker_argv

    parse = build_parser().parse_args
    assert "--no-model-process" in worker_argv(parse(["run", "x.mp4"]))
    assert "--model-process" in worker_argv(parse(["run", "x.mp4", "--model-process"]))
    # the worker reads the environment too: run's --no-model-process must reach it
    env = {"SCENECAST_MODEL_PROCESS": "1"}
    argv = worker_argv(parse_args(["run", "x.mp4", "--no-model-process"], env))
    assert not parse_args(["worker", "--redis-url", "r", *argv], env).model_process
    assert parse(["worker", "--redis-url", "redis://h:1", "--model-process"]).model_process
    assert not parse(["worker", "--redis-url", "redis://h:1"]).model_process


def test_consensus_k_reaches_the_worker_and_defaults_to_the_models() -> None:
    from stream.cli.main import build_parser
    from stream.cli.service import worker_argv

    parse = build_parser().parse_args
    assert "--consensus-k" not in worker_argv(parse(["run", "x.mp4"]))  # the model's
    argv = worker_argv(parse(["run", "x.mp4", "--consensus-k", "0"]))
    assert argv[argv.index("--consensus-k") + 1] == "0"
    assert parse(["worker", "--redis-url", "redis://h:1", *argv]).consensus_k == 0
    assert parse(["caption", "v.mp4", "--consensus-k", "30"]).consensus_k == 30
    assert parse(["worker", "--redis-url", "redis://h:1"]).beam == 5  # the service's beam


def test_ban_words_reach_the_worker_and_the_captioner() -> None:
    from stream.cli.main import build_parser
    from stream.cli.model import search_overrides
    from stream.cli.service import worker_argv

    parse = build_parser().parse_args
    assert "--ban-words" not in worker_argv(parse(["run", "x.mp4"]))  # the model's
    assert "banned_words" not in search_overrides(parse(["run", "x.mp4"]))
    argv = worker_argv(parse(["run", "x.mp4", "--ban-words", "stock,white background"]))
    worker = parse(["worker", "--redis-url", "redis://h:1", *argv])
    assert search_overrides(worker)["banned_words"] == ("stock", "white background")
    caption = parse(["caption", "v.mp4", "--ban-words", ""])
    assert search_overrides(caption)["banned_words"] == ()


def test_hold_reaches_the_worker_and_the_captioner(capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli.main import build_parser
    from stream.cli.model import search_overrides
    from stream.cli.service import worker_argv

    parse = build_parser().parse_args
    assert "--hold" not in worker_argv(parse(["run", "x.mp4"]))  # the model's default
    assert search_overrides(parse(["run", "x.mp4"])) == {}
    for given, margin in (("off", None), ("OFF", None), ("0.1", 0.1), ("0", 0.0)):
        argv = worker_argv(parse(["run", "x.mp4", "--hold", given]))
        worker = parse(["worker", "--redis-url", "redis://h:1", *argv])
        assert search_overrides(worker) == {"hold_margin": margin}
    assert search_overrides(parse(["caption", "v.mp4", "--hold", "0.02"])) == {"hold_margin": 0.02}
    for bad in ("-1", "nan", "sticky"):
        with pytest.raises(SystemExit) as exit_info:
            parse(["worker", "--redis-url", "redis://h:1", "--hold", bad])
        assert exit_info.value.code == 2
        assert 'expected a number >= 0 or "off"' in capsys.readouterr().err


def test_decode_flag_reaches_the_worker_and_refuses_other_places(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stream.cli.main import build_parser
    from stream.cli.service import worker_argv

    parse = build_parser().parse_args
    argv = worker_argv(parse(["run", "x.mp4"]))
    assert argv[argv.index("--decode") + 1] == "device"  # the default, said explicitly
    argv = worker_argv(parse(["run", "x.mp4", "--decode", "cpu"]))
    assert argv[argv.index("--decode") + 1] == "cpu"
    assert parse(["worker", "--redis-url", "redis://h:1"]).decode == "device"
    assert parse(["bench", "pipeline", "--decode", "cpu"]).decode == "cpu"
    with pytest.raises(SystemExit) as caught:
        parse(["worker", "--redis-url", "redis://h:1", "--decode", "gpu"])
    assert caught.value.code == 2
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_decode_device_is_the_models_or_the_cpu() -> None:
    from worker.decode import decode_device

    assert decode_device("device", "cuda:0") == "cuda:0"
    assert decode_device("device", "cpu") == "cpu"
    assert decode_device("cpu", "cuda:0") == "cpu"
    with pytest.raises(ValueError, match="'device' or 'cpu'"):
        decode_device("gpu", "cuda:0")


@pytest.mark.integration
def test_the_commands_that_load_no_model_start_without_torch() -> None:
    # importing torch takes 1.5-2 s on a small CPU: listen, serve, status, capture and
    # the parser itself (every command's --help and flag errors) must not pay it
    code = (
        "import sys; import stream.cli.main, stream.clients.listen, stream.server.server, "
        "stream.clients.status, stream.capture.capture, captioner; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm')); "
        "print(heavy[:5]); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_mistyped_flag_is_named_by_its_command_with_the_flag_meant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stream.cli.main import main

    cases = [
        (["caption", "x.mp4", "--fsp", "2"], "scenecast caption: error: unrecognized arguments: "
         "--fsp 2 (did you mean --fps?)"),
        (["run", "x.mp4", "--max-bach=4"], "(did you mean --max-batch?)"),
        (["worker", "--redis-url", "redis://h:1", "--zzz"], "unrecognized arguments: --zzz\n"),
    ]  # fmt: skip
    for argv, message in cases:
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert err.startswith(f"usage: scenecast {argv[0]} ")  # the command's usage


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stopped_capture_says_ended_ctrl_c_or_sigterm(redis_server, sig: str) -> None:  # type: ignore[no-untyped-def]
    """Ctrl+C left the source "live" (then shown as a capture gone silent)."""
    import json
    import signal
    import time

    import redis

    from worker.bus.keys import SOURCES_KEY

    client = redis.Redis.from_url(redis_server.url)
    name = f"stopped-{sig.lower()}"
    video = Path(__file__).parents[3] / "stream" / "assets" / "demo.mp4"
    capture = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "capture", str(video), "--name", name, "--live",
         "--loop", "--redis-url", redis_server.url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip

    def state() -> str | None:
        raw = client.hget(SOURCES_KEY, name)
        return None if raw is None else str(json.loads(raw)["state"])

    try:
        deadline = time.monotonic() + 30
        while state() != "live" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state() == "live"
        capture.send_signal(getattr(signal, sig))
        assert capture.wait(30) == 0
        assert state() == "ended"
    finally:
        capture.kill()
        capture.wait()
        assert capture.stderr is not None
        capture.stderr.close()
        client.close()


def test_a_worker_that_cannot_reach_redis_says_so_before_loading_its_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded first")

    monkeypatch.setattr("captioner.api.Captioner.load", load)
    code = main(["worker", "--redis-url", "redis://127.0.0.1:1/0", "--device", "cpu"])
    assert code == 2
    assert (
        "scenecast: error: cannot reach Redis at redis://127.0.0.1:1/0" in capsys.readouterr().err
    )


def test_ctrl_c_before_a_command_handles_it_is_exit_130_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(argv: object) -> int:
        raise KeyboardInterrupt  # e.g. while torch is imported

    monkeypatch.setattr("stream.cli.main._main", interrupted)
    assert main(["run", "x.mp4"]) == 130


@pytest.mark.integration
def test_a_redis_url_with_no_password_or_a_missing_database_is_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both were a traceback (DB index is out of range) or Redis's own words about
    HELLO AUTH, never naming the URL's password."""
    import redis

    from stream.embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        base = server.url.rsplit("/", 1)[0]
        assert main(["status", "--redis-url", f"{base}/99"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("scenecast: error: Redis at ") and "has no database 99" in err
        assert "Traceback" not in err and len(err.splitlines()) == 1
        client = redis.Redis.from_url(server.url)
        client.config_set("requirepass", "sekret-sekret")
        try:
            assert main(["status", "--redis-url", f"{base}/0"]) == 2
            err = capsys.readouterr().err
            assert "requires a password, and the URL gives none" in err, err
            assert "redis://:PASSWORD@HOST:PORT/DB" in err
        finally:
            authed = redis.Redis.from_url(base.replace("redis://", "redis://:sekret-sekret@"))
            authed.config_set("requirepass", "")
            authed.close()
            client.close()
