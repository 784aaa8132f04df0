"""The viewer page (``/``) in a real headless Chromium, against a real server and Redis.

Chromium is Debian's (``apt-get install chromium``; ``make test`` installs it where it
can) driven by Playwright with ``executable_path``: nothing is downloaded. Without a
Chromium these tests are skipped, saying so; set ``SCENECAST_CHROMIUM`` to use another
binary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from stream.server.server import CaptionServer, ServerConfig
from tests.conftest import TIMEOUT_FACTOR
from tests.support.frames import jpeg, publish_caption, register, set_status
from worker.bus.keys import frames_key

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("SCENECAST_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = [
    pytest.mark.integration,  # a browser, and the server it talks to
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium: apt-get install chromium, or set SCENECAST_CHROMIUM"
    ),
]
# as root, on a closed network: no sandbox, no background connections
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
T_MS = 10_000 * TIMEOUT_FACTOR


@contextmanager
def serving(redis_url: str, port: int = 0, **config: Any) -> Iterator[int]:
    """A CaptionServer in a thread of its own (Playwright's sync API owns this one);
    ``config``: more ServerConfig fields."""
    started = threading.Event()
    stop: list[Any] = []
    ports: list[int] = []

    async def main() -> None:
        settings = ServerConfig(port=port, block_ms=100, **config)
        async with CaptionServer(redis_url, settings) as server:
            done = asyncio.Event()
            stop.append((asyncio.get_running_loop(), done))
            ports.append(server.port)
            started.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(T_MS / 1000), "the server did not start"
    try:
        yield ports[0]
    finally:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set)
        thread.join(T_MS / 1000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(T_MS)
    yield page
    page.close()
    assert not errors, f"the page raised: {errors}"


def _history(card: Any) -> list[tuple[str, str, str]]:
    """(time range, text, final) per line, newest first."""
    return [
        (
            li.locator("time").text_content(),
            li.locator(".text").text_content(),
            li.get_attribute("data-final"),
        )
        for li in card.locator(".history li").all()
    ]


def _pixel(page: Any, card: Any, x: int, y: int) -> list[int]:
    canvas = card.locator("canvas").element_handle()
    return list(
        page.evaluate(
            "([c, x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)",
            [canvas, x, y],
        )
    )


def test_the_viewer_shows_state_captions_segments_and_where_each_word_looked(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=True)
    register(redis_client, "other", live=True)
    set_status(redis_client, "cam", "live", "rtsp://camera/stream")
    picture = jpeg((40, 40, 40), size=(64, 48))  # dark, with a white square at (10..30)
    for seq, text in enumerate(["a dog runs", "a dog runs", "a grey box"]):
        publish_caption(redis_client, "cam", seq, text, frame_data=picture, grid=(2, 2))
    publish_caption(redis_client, "other", 0, "not wanted here")

    with serving(redis_server.url) as port:
        page.goto(f"http://127.0.0.1:{port}/?source=cam")
        card = page.locator('.card[data-source="cam"]')
        card.locator(".state").get_by_text("live").wait_for()
        assert card.locator(".detail").text_content() == "rtsp://camera/stream"
        page.wait_for_function("document.querySelector('.card').dataset.captions === '3'")
        # one line per segment, newest first; the older segment is final
        assert _history(card) == [
            ("0:02.0–0:03.0", "a grey box", "false"),
            ("0:00.0–0:02.0", "a dog runs", "true"),
        ]
        assert page.locator(".card").count() == 1  # ?source=cam: not "other"
        # the newest caption is shown with its frame, a word per button
        page.wait_for_function("document.querySelector('.card').dataset.shownSeq === '2'")
        assert card.locator(".note").is_hidden() and card.locator("canvas").is_visible()
        assert card.locator(".now button").all_text_contents() == ["a", "grey", "box"]

        # "grey" (word 1) looked at cell 1 of the 2x2 grid: the top right of the model's
        # square, which for a 64x48 frame letterboxed is x 32..64, y -8..24
        before = _pixel(page, card, 48, 4), _pixel(page, card, 16, 40)
        card.locator(".now button").nth(1).hover()
        after = _pixel(page, card, 48, 4), _pixel(page, card, 16, 40)
        looked, elsewhere = after
        assert looked[0] > before[0][0] + 60 and looked[2] < looked[0] - 60  # yellow tint
        assert elsewhere[0] < before[1][0]  # the rest is dimmed
        page.mouse.move(900, 790)
        page.wait_for_function(
            "(r) => document.querySelector('canvas').getContext('2d')"
            ".getImageData(16, 40, 1, 1).data[0] >= r",
            arg=before[1][0],
        )

        # live: the same text extends its segment; a new text starts a line
        publish_caption(redis_client, "cam", 3, "a grey box", frame_data=picture)
        publish_caption(redis_client, "cam", 4, "a cat", frame_data=picture)
        page.wait_for_function("document.querySelector('.card').dataset.captions === '5'")
        assert [line[:2] for line in _history(card)] == [
            ("0:04.0–0:05.0", "a cat"),
            ("0:02.0–0:04.0", "a grey box"),
            ("0:00.0–0:02.0", "a dog runs"),
        ]
        # a frame Redis no longer keeps (trimmed: live sources keep their newest frames
        # only) is said so, not shown broken
        with redis_client.pipeline(transaction=True) as atomically:
            publish_caption(atomically, "cam", 5, "a cat", frame_id="5000-0", frame_data=picture)
            atomically.xtrim(frames_key("cam"), minid="9999-0")
            atomically.execute()
        page.wait_for_function("document.querySelector('.card').dataset.shownSeq === '5'")
        assert card.locator(".note").text_content() == "frame no longer kept"
        assert card.locator("canvas").is_hidden()  # not the previous caption's picture

        set_status(redis_client, "cam", "ended", "end of file")
        card.locator('.state[data-state="ended"]').wait_for()
        assert {final for *_, final in _history(card)} == {"true"}
        # a file job ends when its last frame is read; captions after that are final too
        publish_caption(redis_client, "cam", 6, "a dog", frame_id="6000-0", frame_data=picture)
        page.wait_for_function("document.querySelector('.card').dataset.captions === '7'")
        assert _history(card)[0][1:] == ("a dog", "true")


def test_the_viewer_resumes_after_the_server_restarts_missing_nothing_and_nothing_twice(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "door", live=True)
    set_status(redis_client, "door", "live")
    register(redis_client, "quiet", live=True)  # no caption before the server goes away
    set_status(redis_client, "quiet", "live")
    door = '.card[data-source="door"]'
    with serving(redis_server.url) as port:
        page.goto(f"http://127.0.0.1:{port}/?history=0")
        page.locator("#conn[data-state=open]").wait_for()
        page.locator(door).wait_for()
        for seq in range(2):
            publish_caption(redis_client, "door", seq, f"visitor {seq}")
        page.wait_for_function(f"document.querySelector('{door}').dataset.captions === '2'")
    page.locator("#conn[data-state=closed]").wait_for()
    for seq in range(2, 4):  # while the server is away
        publish_caption(redis_client, "door", seq, f"visitor {seq}")
    publish_caption(redis_client, "quiet", 0, "a parcel")
    with serving(redis_server.url, port=port):
        page.locator("#conn[data-state=open]").wait_for()
        publish_caption(redis_client, "door", 4, "visitor 4")
        page.wait_for_function(f"document.querySelector('{door}').dataset.captions === '5'")
        page.wait_for_timeout(500)  # and nothing more arrives: no caption twice
        card = page.locator(door)
        assert card.get_attribute("data-captions") == "5"
        assert [text for _, text, _ in _history(card)] == [f"visitor {s}" for s in range(4, -1, -1)]
        # a source with no caption yet when the page lost the server: its caption from
        # meanwhile arrives too
        quiet = page.locator('.card[data-source="quiet"]')
        assert quiet.get_attribute("data-captions") == "1"
        assert [text for _, text, _ in _history(quiet)] == ["a parcel"]


def test_the_viewer_replays_the_last_minute_whatever_the_browsers_clock_says(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    import datetime

    register(redis_client, "porch", live=True)
    set_status(redis_client, "porch", "live")
    for seq in range(3):  # captioned just now, on Redis's clock
        publish_caption(redis_client, "porch", seq, f"a cat {seq}")
    # this browser's clock is an hour fast: "the last 60 s" by it would be in the future
    page.clock.set_system_time(datetime.datetime.now() + datetime.timedelta(hours=1))
    with serving(redis_server.url) as port:
        page.goto(f"http://127.0.0.1:{port}/?source=porch")
        card = page.locator('.card[data-source="porch"]')
        page.wait_for_function("document.querySelector('.card')?.dataset.captions === '3'")
        assert [text for _, text, _ in _history(card)] == ["a cat 2", "a cat 1", "a cat 0"]


def test_the_viewer_of_a_server_with_a_token_takes_it_from_its_address(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    token = "viewer-token-0123456789"
    register(redis_client, "cam", live=True)
    set_status(redis_client, "cam", "live")
    picture = jpeg((40, 40, 40), size=(64, 48))
    publish_caption(redis_client, "cam", 0, "a dog runs", frame_data=picture, grid=(2, 2))
    with serving(redis_server.url, token=token) as port:
        response = page.goto(f"http://127.0.0.1:{port}/")
        assert response.status == 401 and "?token=TOKEN" in page.content()
        # the token travels with the websocket (in its URL) and with each frame's fetch
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        card = page.locator('.card[data-source="cam"]')
        page.wait_for_function("document.querySelector('.card')?.dataset.shownSeq === '0'")
        assert card.locator(".now button").all_text_contents() == ["a", "dog", "runs"]
        assert card.locator(".note").is_hidden() and card.locator("canvas").is_visible()
        publish_caption(redis_client, "cam", 1, "a cat", frame_data=picture)
        page.wait_for_function("document.querySelector('.card').dataset.captions === '2'")
        # each card links the source's transcript, the token with it
        links = card.locator(".transcript a")
        assert links.all_text_contents() == [".vtt", ".srt", ".jsonl"]
        href = links.first.get_attribute("href")
        assert href == f"/captions/cam.vtt?token={token}"
        got = page.request.get(f"http://127.0.0.1:{port}{href}")
        assert got.status == 200 and got.text().count("-->") == 2 and "a cat" in got.text()
    # the server comes back with another token: the open page says why it cannot connect
    with serving(redis_server.url, port=port, token="another-token-0123456789"):
        page.locator("#notice").get_by_text("the server refused this page's token").wait_for()


def test_the_viewer_over_tls_uses_wss(
    redis_server, redis_client: redis.Redis, browser: Any, tmp_path: Any
) -> None:  # type: ignore[no-untyped-def]
    from tests.support.tls import self_signed

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    cert, key = self_signed(tmp_path)
    register(redis_client, "cam", live=True)
    set_status(redis_client, "cam", "live")
    publish_caption(redis_client, "cam", 0, "a dog runs", frame_data=jpeg((40, 40, 40)))
    context = browser.new_context(ignore_https_errors=True)  # self-signed
    page = context.new_page()
    page.set_default_timeout(T_MS)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    token = "viewer-tls-token-0123456"
    try:
        with serving(redis_server.url, token=token, tls_cert=cert, tls_key=key) as port:
            page.goto(f"https://127.0.0.1:{port}/?token={token}")
            page.wait_for_function("document.querySelector('.card')?.dataset.shownSeq === '0'")
            card = page.locator('.card[data-source="cam"]')
            assert card.locator("canvas").is_visible()  # the frame came over https too
            assert sockets == [f"wss://127.0.0.1:{port}/ws?token={token}"]
    finally:
        context.close()


def test_the_viewer_says_what_the_server_refused_and_asks_only_for_usable_names(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    """A typo (?source=Cam) or a name no source can have was silence; the page says so,
    and follows the names that can be sources."""
    register(redis_client, "cam", live=True)
    publish_caption(redis_client, "cam", 0, "a red car")
    with serving(redis_server.url) as port:
        page.goto(f"http://127.0.0.1:{port}/?source=Cam&source=bad%20name&source=cam")
        notice = page.locator("#notice")
        notice.get_by_text("no source named 'Cam' (yet); known: cam").wait_for()
        assert '?source="bad name" is not a source name' in notice.text_content()
        page.wait_for_function("document.querySelector('.card[data-source=\"cam\"]')"
                               "?.dataset.captions === '1'")  # fmt: skip


def test_a_keyboard_user_stays_on_a_word_as_captions_come(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=True)
    picture = jpeg((40, 40, 40), size=(64, 48))
    publish_caption(redis_client, "cam", 0, "a red car", frame_data=picture, grid=(2, 2))
    with serving(redis_server.url) as port:
        page.goto(f"http://127.0.0.1:{port}/")
        card = page.locator('.card[data-source="cam"]')
        page.wait_for_function("document.querySelector('.card')?.dataset.shownSeq === '0'")
        card.locator(".now button").nth(1).focus()
        publish_caption(redis_client, "cam", 1, "a red bus", frame_data=picture, grid=(2, 2))
        page.wait_for_function("document.querySelector('.card').dataset.shownSeq === '1'")
        assert page.evaluate("document.activeElement.textContent") == "red"
        assert page.evaluate("cards.get('cam').word") == 1  # its attention is drawn


def test_a_history_reaching_before_any_caption_replays_the_whole_log(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    """?history=1e10 (more seconds than since 1970) and fractions: ids the server takes."""
    register(redis_client, "cam", live=True)
    for seq in range(2):
        publish_caption(redis_client, "cam", seq, f"a cat {seq}")
    with serving(redis_server.url) as port:
        for history in ("1e10", "3600.0001"):
            page.goto(f"http://127.0.0.1:{port}/?history={history}")
            page.wait_for_function("document.querySelector('.card')?.dataset.captions === '2'")
            assert page.locator("#notice").is_hidden()


def test_a_new_caption_log_starts_new_lines_and_long_names_fit_a_phone(
    redis_server, redis_client: redis.Redis, browser: Any
) -> None:  # type: ignore[no-untyped-def]
    """Redis restarted empty under a running server: segment ids start again at 0, and
    the new captions got written into the old lines (old texts, stretched times)."""
    name = "a" * 30 + "." + "b" * 33  # 64 characters, the longest a name may be
    register(redis_client, name, live=True)
    for seq, text in enumerate(["a dog", "a cat"]):
        publish_caption(redis_client, name, seq, text)
    page = browser.new_page(viewport={"width": 375, "height": 700})
    try:
        with serving(redis_server.url) as port:
            page.goto(f"http://127.0.0.1:{port}/?history=60")
            card = page.locator(".card")
            page.wait_for_function("document.querySelector('.card')?.dataset.captions === '2'")
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            redis_client.flushdb()  # what a restart without persistence leaves
            register(redis_client, name, live=True)
            publish_caption(redis_client, name, 0, "a car")
            page.wait_for_function("document.querySelector('.card').dataset.captions === '3'")
            assert [text for _, text, _ in _history(card)] == ["a car", "a cat", "a dog"]
    finally:
        page.close()


def test_an_ended_source_shows_its_last_captions_whatever_their_age(
    redis_server, redis_client: redis.Redis, page: Any
) -> None:  # type: ignore[no-untyped-def]
    """A viewer opened more than its history (60 s by default) after a file job ended
    showed "waiting for a caption…" for good; a live source still replays its history
    only."""
    register(redis_client, "job", live=False)
    register(redis_client, "porch", live=True)
    for seq in range(3):
        publish_caption(redis_client, "job", seq, f"a boat {seq}")
        publish_caption(redis_client, "porch", seq, f"a cat {seq}")
    set_status(redis_client, "job", "ended")
    set_status(redis_client, "porch", "live")
    time.sleep(1.5)  # every caption is now older than a 1-second history
    with serving(redis_server.url) as port:
        page.goto(f"http://127.0.0.1:{port}/?history=1")
        job = page.locator('.card[data-source="job"]')
        page.wait_for_function(
            "document.querySelector('.card[data-source=\"job\"]')?.dataset.captions === '3'"
        )
        assert [text for _, text, _ in _history(job)] == ["a boat 2", "a boat 1", "a boat 0"]
        porch = page.locator('.card[data-source="porch"]')
        assert porch.get_attribute("data-captions") in (None, "0")
