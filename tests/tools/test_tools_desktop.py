"""DesktopExecutor under Xvfb: pyautogui/mss against a real headed chromium window.

Chromium runs in --kiosk on the test display, so page CSS pixels are screen pixels; the page records
every event it receives and the test reads the record back over CDP (connect_over_cdp). Nothing here
goes through Playwright's input: all input is X events from the executor.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from actions_page import act, center, mouse_log
from tools.browser import CHROMIUM_ARGS, shared_playwright
from tools.desktop import DesktopExecutor

pytestmark = [pytest.mark.display, pytest.mark.browser]

PAGE_URL = (Path(__file__).parent / "pages" / "actions.html").as_uri()
DOUBLE_CLICK_GAP = 0.6  # > X/Chromium double-click time: separate actions must not merge into one multi-click


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kiosk(x_display, chromium_path, tmp_path_factory):
    """(page, process): a fullscreen chromium on the Xvfb display, its page reachable over CDP."""
    port = _free_port()
    proc = subprocess.Popen(
        [chromium_path, *CHROMIUM_ARGS, f"--remote-debugging-port={port}",
         f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
         "--kiosk", "--window-position=0,0", "--window-size=1280,800", PAGE_URL],
        env={**os.environ, "DISPLAY": x_display}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/json/version", timeout=1)
            break
        except httpx.TransportError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("headed chromium did not start on the Xvfb display")
            time.sleep(0.2)
    pw = shared_playwright.acquire()
    browser = pw.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
    try:
        page = next(p for c in browser.contexts for p in c.pages if p.url == PAGE_URL)
        page.wait_for_load_state("load")
        # kiosk: the viewport is the whole screen, so CSS px == screen px
        assert page.evaluate("() => [screenX, screenY, innerWidth, innerHeight, devicePixelRatio]") == [
            0, 0, 1280, 800, 1]
        yield page
    finally:
        browser.close()
        shared_playwright.release()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def ex(x_display):
    executor = DesktopExecutor(display=x_display)
    yield executor
    executor.close()


@pytest.fixture()
def page(kiosk):
    kiosk.reload()
    kiosk.wait_for_load_state("load")
    time.sleep(DOUBLE_CLICK_GAP)
    return kiosk


def wait_for(page, js: str, arg=None) -> None:
    page.wait_for_function(js, arg=arg, timeout=5000)


def test_geometry_and_screenshot_match_the_display(ex, page):
    g = ex.geometry
    assert (g.shot_width, g.shot_height, g.input_width, g.input_height, g.left, g.top) == (1280, 800, 1280, 800, 0, 0)
    image = ex.screenshot()
    assert image.size == (1280, 800) and image.mode == "RGB"
    hx, hy = center(page, "hover")
    assert image.getpixel((round(hx), round(hy))) == (0, 0, 255)  # the page is where the screenshot says


@pytest.mark.parametrize(
    "name, event, button, detail, offset",
    [
        ("left_click", "click", 0, 1, (-120, -60)),
        ("right_click", "contextmenu", 2, 0, (-60, 40)),
        ("middle_click", "auxclick", 1, 1, (0, -40)),
        ("double_click", "dblclick", 0, 2, (60, 60)),
        ("triple_click", "click", 0, 3, (120, -20)),
    ],
)
def test_clicks_reach_the_element_at_the_target(ex, page, name, event, button, detail, offset):
    cx, cy = center(page, "pad")
    x, y = cx + offset[0], cy + offset[1]
    out = act(ex, name, (x, y))
    assert out.ok and out.input_point == (round(x), round(y))
    wait_for(page, f"() => window.__log.mouse.some(e => e.type === '{event}' && e.button === {button})")
    last = [e for e in mouse_log(page, event) if e["button"] == button][-1]
    assert (last["sx"], last["sy"]) == (round(x), round(y))
    assert last["detail"] == detail
    downs = [e["detail"] for e in mouse_log(page, "mousedown")]
    assert downs == list(range(1, max(detail, 1) + 1))
    assert all(e["button"] == button for e in mouse_log(page, "mousedown"))


def test_triple_click_selects_the_paragraph(ex, page):
    out = act(ex, "triple_click", center(page, "para"))
    assert out.ok
    wait_for(page, "() => window.getSelection().toString().trim() === 'alpha beta gamma delta'")


def test_click_without_target_clicks_at_the_pointer(ex, page):
    x, y = center(page, "pad")
    act(ex, "mouse_move", (x - 50, y + 30))
    assert ex.cursor_position() == (round(x - 50), round(y + 30))
    out = act(ex, "left_click")
    assert out.ok and out.input_point == (round(x - 50), round(y + 30))
    wait_for(page, "() => window.__log.mouse.some(e => e.type === 'click')")
    assert [(e["sx"], e["sy"]) for e in mouse_log(page, "click")] == [(round(x - 50), round(y + 30))]


def test_type_unicode_through_the_clipboard_and_ascii_key_by_key(ex, page):
    act(ex, "left_click", center(page, "text"))
    text = "héllo — ü ✓ 'quotes' \"dq\"\nplain ASCII: {x} = [1, 2]; ~!@#$%^&*()_+| a<b>c Sheet2 bookkeeper"
    out = act(ex, "type", text=text)
    assert out.ok
    wait_for(page, "(t) => document.getElementById('text').value === t", text)
    # the second line went as key events (with "<" its own key, not pyautogui's ">"), the first was pasted
    keys = [k["key"] for k in page.evaluate("() => window.__log.keys")]
    assert "{" in keys and "~" in keys and "<" in keys and "é" not in keys
    assert keys.count("Enter") == 1


def test_key_chord_fires_its_handler(ex, page):
    act(ex, "left_click", center(page, "text"))
    out = act(ex, "key", keys=["CTRL", "shift", "K"])
    assert out.ok
    wait_for(page, "() => window.__log.chords.length === 1")
    keys = page.evaluate("() => window.__log.keys")
    assert [k["key"] for k in keys] == ["Control", "Shift", "K"]
    # released in reverse order: no modifier is left down for the next action
    act(ex, "type", text="z")
    wait_for(page, "() => document.getElementById('text').value === 'z'")
    assert page.evaluate("() => window.__log.keys.at(-1)") == {
        "key": "z", "code": "KeyZ", "ctrl": False, "shift": False, "alt": False}


def test_scroll_and_hscroll_at_the_coordinate(ex, page):
    sc = center(page, "scroller")
    position = lambda: page.evaluate(  # noqa: E731
        "() => { const s = document.getElementById('scroller'); return [s.scrollLeft, s.scrollTop]; }")
    act(ex, "scroll", center(page, "pad"), pixels=-3)  # elsewhere: the scroller stays put
    time.sleep(0.3)
    assert position() == [0, 0]

    out = act(ex, "scroll", sc, pixels=-3)
    assert out.ok and out.input_point == (round(sc[0]), round(sc[1]))
    wait_for(page, "() => document.getElementById('scroller').scrollTop >= 300")
    assert position()[0] == 0

    act(ex, "hscroll", sc, pixels=2)  # X buttons 6/7; positive = right
    wait_for(page, "() => document.getElementById('scroller').scrollLeft >= 200")

    act(ex, "scroll", sc, pixels=5)  # positive = up
    wait_for(page, "() => document.getElementById('scroller').scrollTop === 0")
    wheel = page.evaluate("() => window.__log.wheel")
    assert {(e["x"], e["y"]) for e in wheel} == {(round(sc[0]), round(sc[1]))}
    assert any(e["dx"] > 0 and e["dy"] == 0 for e in wheel)


def test_drag_moves_the_slider(ex, page):
    r = page.evaluate("() => window.__rect('slider')")
    act(ex, "mouse_move", (r["x"] + 8, r["cy"]))
    out = act(ex, "left_click_drag", (r["x"] + r["w"] * 0.75, r["cy"]))
    assert out.ok and out.input_point == (round(r["x"] + r["w"] * 0.75), round(r["cy"]))
    value = int(page.evaluate("() => document.getElementById('slider').value"))
    assert 70 <= value <= 80, value


def test_mouse_move_hovers(ex, page):
    hx, hy = center(page, "hover")
    act(ex, "mouse_move", (hx, hy))
    wait_for(page, "() => window.__log.hovered")
    deadline = time.time() + 3
    while ex.screenshot().getpixel((round(hx), round(hy))) != (255, 0, 0):
        assert time.time() < deadline, "hover style never painted"
        time.sleep(0.05)


def test_targets_are_clamped_into_the_monitor(ex):
    out = act(ex, "mouse_move", (5000, -40))
    assert out.input_point == (1279, 0)
    assert ex.cursor_position() == (1279, 0)


def test_wait_answer_terminate_and_bad_keys(ex):
    t0 = time.monotonic()
    assert act(ex, "wait", time=0.25).ok
    assert time.monotonic() - t0 >= 0.25
    out = act(ex, "answer", text="42")
    assert (out.done, out.answer) == (True, "42")
    assert act(ex, "terminate", status="success").success is True
    failed = act(ex, "terminate", status="failure")
    assert failed.done and failed.success is False
    bad = act(ex, "key", keys=["ctrl", "hyperdrive"])
    assert not bad.ok and "hyperdrive" in bad.error


def test_a_second_display_in_one_process_is_refused(ex, x_display):
    with pytest.raises(ValueError, match="already bound"):
        DesktopExecutor(display=":4242")
    with pytest.raises(ValueError, match="monitor 7 does not exist"):
        DesktopExecutor(display=x_display, monitor=7)
