"""BrowserExecutor on headless Debian chromium: every action checked by what the page recorded.

One browser for the module; each test reloads tests/tools/pages/actions.html. The context runs at
device_scale_factor=2, so every target below is given in *screenshot* pixels (2x CSS px) and the
executor's geometry has to map it back — a wrong mapping misses the elements.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from actions_page import act, center, mouse_log
from agent.actions import Action
from tools.browser import BrowserExecutor

pytestmark = pytest.mark.browser

PAGES = Path(__file__).parent / "pages"
PAGE_URL = (PAGES / "actions.html").as_uri()
SCALE = 2


@pytest.fixture(scope="module")
def ex(chromium_path):
    executor = BrowserExecutor.launch(viewport=(1000, 560), device_scale_factor=SCALE)
    yield executor
    executor.close()


@pytest.fixture()
def page(ex):
    ex.goto(PAGE_URL)
    return ex.page


def shot(p: tuple[float, float]) -> tuple[float, float]:
    return p[0] * SCALE, p[1] * SCALE


def test_geometry_maps_screenshot_pixels_to_css_pixels(ex, page):
    image = ex.screenshot()
    assert image.size == (1000 * SCALE, 560 * SCALE)
    g = ex.geometry
    assert (g.shot_width, g.input_width, g.scale) == (2000, 1000, 2.0)
    assert g.to_input(401, 199) == (200, 100)


@pytest.mark.parametrize(
    "name, event, button, detail",
    [
        ("left_click", "click", 0, 1),
        ("right_click", "contextmenu", 2, 1),  # contextmenu carries detail 0; mousedown has it
        ("middle_click", "auxclick", 1, 1),
        ("double_click", "dblclick", 0, 2),
        ("triple_click", "click", 0, 3),
    ],
)
def test_clicks_reach_the_element_at_the_target(ex, page, name, event, button, detail):
    x, y = center(page, "pad")
    x, y = x + 37, y - 21  # off-center, so a mapping error cannot hide behind the element's symmetry
    out = act(ex, name, shot((x, y)))
    assert out.ok and out.input_point == (round(x), round(y))
    got = [e for e in mouse_log(page, event) if e["button"] == button]
    assert got, f"no {event} with button {button}: {mouse_log(page)}"
    last = got[-1]
    assert (last["x"], last["y"]) == (round(x), round(y))
    if event != "contextmenu":
        assert last["detail"] == detail
    downs = [e for e in mouse_log(page, "mousedown") if e["button"] == button]
    assert [e["detail"] for e in downs] == list(range(1, detail + 1))


def test_triple_click_selects_the_paragraph(ex, page):
    out = act(ex, "triple_click", shot(center(page, "para")))
    assert out.ok
    assert page.evaluate("() => window.getSelection().toString()").strip() == "alpha beta gamma delta"


def test_click_without_target_clicks_at_the_pointer(ex, page):
    x, y = center(page, "pad")
    act(ex, "mouse_move", shot((x - 50, y + 30)))
    out = act(ex, "left_click")
    assert out.ok and out.input_point == (round(x - 50), round(y + 30))
    clicks = mouse_log(page, "click")
    assert [(e["x"], e["y"]) for e in clicks] == [(round(x - 50), round(y + 30))]


def test_type_unicode_quotes_and_newlines_into_a_textarea(ex, page):
    act(ex, "left_click", shot(center(page, "text")))
    text = "héllo — ü ✓ 'quotes' \"dq\"\nsecond line {x}"
    out = act(ex, "type", text=text)
    assert out.ok
    assert page.evaluate("() => document.getElementById('text').value") == text


def test_scroll_and_hscroll_move_the_element_under_the_target(ex, page):
    sc = center(page, "scroller")
    position = lambda: page.evaluate(  # noqa: E731
        "() => { const s = document.getElementById('scroller'); return [s.scrollLeft, s.scrollTop]; }")
    # wheel over another element: the scroller must not move
    act(ex, "scroll", shot(center(page, "pad")), pixels=-3)
    assert position() == [0, 0]

    out = act(ex, "scroll", shot(sc), pixels=-3)
    assert out.ok and out.input_point == (round(sc[0]), round(sc[1]))
    page.wait_for_function("() => document.getElementById('scroller').scrollTop > 0")
    left, top = position()
    assert left == 0 and top >= 200

    act(ex, "hscroll", shot(sc), pixels=2)  # positive = right
    page.wait_for_function("() => document.getElementById('scroller').scrollLeft > 0")
    assert position()[0] >= 100

    act(ex, "scroll", shot(sc), pixels=10)  # positive = up, back to the top
    page.wait_for_function("() => document.getElementById('scroller').scrollTop === 0")
    wheel = page.evaluate("() => window.__log.wheel")
    assert [(e["x"], e["y"]) for e in wheel] == [(round(sc[0]), round(sc[1]))] * 3


def test_drag_moves_the_slider(ex, page):
    r = page.evaluate("() => window.__rect('slider')")
    thumb = (r["x"] + 8, r["cy"])
    act(ex, "mouse_move", shot(thumb))
    out = act(ex, "left_click_drag", shot((r["x"] + r["w"] * 0.75, r["cy"])))
    assert out.ok
    value = int(page.evaluate("() => document.getElementById('slider').value"))
    assert 70 <= value <= 80, value


def test_key_chord_fires_its_handler(ex, page):
    out = act(ex, "key", keys=["Control_L", "SHIFT", "k"])
    assert out.ok
    assert page.evaluate("() => window.__log.chords") == ["ctrl+shift+k"]
    keys = page.evaluate("() => window.__log.keys")
    assert [k["key"] for k in keys] == ["Control", "Shift", "K"]
    # released in reverse: nothing stays held for the next action
    act(ex, "left_click", shot(center(page, "text")))
    act(ex, "type", text="a")
    assert page.evaluate("() => document.getElementById('text').value") == "a"


def test_key_chord_in_one_string_and_unknown_keys(ex, page):
    assert act(ex, "key", keys=["ctrl+shift+K"]).ok
    assert page.evaluate("() => window.__log.chords") == ["ctrl+shift+k"]
    out = act(ex, "key", keys=["ctrl", "hyperdrive"])
    assert not out.ok and "hyperdrive" in out.error


def test_mouse_move_hovers(ex, page):
    hx, hy = center(page, "hover")
    before = ex.screenshot().getpixel((round(hx * SCALE), round(hy * SCALE)))
    assert before == (0, 0, 255)
    act(ex, "mouse_move", shot((hx, hy)))
    assert page.evaluate("() => window.__log.hovered") is True
    assert ex.screenshot().getpixel((round(hx * SCALE), round(hy * SCALE))) == (255, 0, 0)


def test_wait_answer_terminate(ex):
    t0 = time.monotonic()
    assert act(ex, "wait", time=0.3).ok
    assert time.monotonic() - t0 >= 0.3
    out = act(ex, "answer", text="Lisbon")
    assert (out.ok, out.done, out.answer) == (True, True, "Lisbon")
    assert act(ex, "terminate", status="success").success is True
    failed = act(ex, "terminate", status="failure")
    assert failed.done and failed.success is False


def test_pointer_actions_without_required_target_fail_cleanly(ex, page):
    out = ex.execute(Action(action="mouse_move", coordinate=(10, 10)), None)
    assert not out.ok and "target" in out.error


def test_focused_is_password(ex, page):
    assert ex.focused_is_password() is False
    act(ex, "left_click", shot(center(page, "password")))
    assert ex.focused_is_password() is True
    act(ex, "left_click", shot(center(page, "plain")))
    assert ex.focused_is_password() is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_pages():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(PAGES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_domain_lists_block_navigation_with_a_reason_and_cdp_port(chromium_path, http_pages):
    port = http_pages
    cdp = _free_port()
    ex = BrowserExecutor.launch(
        viewport=(1000, 560), start_url=f"http://127.0.0.1:{port}/actions.html",
        allow_domains=["127.0.0.1"], deny_domains=["ads.127.0.0.1"], cdp_port=cdp,
    )
    try:
        # the CDP endpoint is up, so OSWorld-style setup steps can attach
        assert "Browser" in httpx.get(f"http://127.0.0.1:{cdp}/json/version", timeout=5).json()
        page = ex.page
        assert page.url.startswith(f"http://127.0.0.1:{port}/")
        # a link to a domain that is not allowed: the click happens, the navigation does not
        page.evaluate(f"() => document.getElementById('link').href = 'http://localhost:{port}/actions.html'")
        r = page.evaluate("() => window.__rect('link')")
        out = ex.execute(Action(action="left_click"), (r["cx"], r["cy"]))
        assert not out.ok
        assert "localhost" in out.error and "allow list" in out.error
        assert page.url.startswith(f"http://127.0.0.1:{port}/")
        with pytest.raises(ValueError, match="deny list"):
            ex.goto(f"http://ads.127.0.0.1:{port}/actions.html")
        # an allowed navigation is fine
        ex.goto(f"http://127.0.0.1:{port}/actions.html#again")
        assert ex.execute(Action(action="left_click"), (5, 5)).ok
    finally:
        ex.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{cdp}/json/version", timeout=2)


def test_blocked_iframe_does_not_fail_the_action(chromium_path, http_pages):
    port = http_pages
    ex = BrowserExecutor.launch(viewport=(800, 500), start_url=f"http://127.0.0.1:{port}/actions.html",
                                deny_domains=["localhost"])
    try:
        page = ex.page
        page.evaluate(f"""() => {{ const b = document.createElement('button'); b.id = 'add';
            b.textContent = 'add'; b.style = 'position:absolute;left:700px;top:450px';
            b.onclick = () => {{ const f = document.createElement('iframe');
                                 f.src = 'http://localhost:{port}/actions.html'; document.body.append(f); }};
            document.body.append(b); }}""")
        r = page.evaluate("() => window.__rect('add')")
        out = ex.execute(Action(action="left_click"), (r["cx"], r["cy"]))
        assert out.ok, out.error
        assert page.evaluate("() => document.querySelectorAll('iframe').length") == 1
    finally:
        ex.close()


def test_new_tabs_become_the_page_the_executor_acts_on(ex, page):
    page.evaluate("() => { const a = document.getElementById('link'); a.target = '_blank';"
                  " a.href = location.href.split('#')[0] + '#popup'; }")
    out = act(ex, "left_click", shot(center(page, "link")))
    assert out.ok
    deadline = time.time() + 5
    while not ex.page.url.endswith("#popup"):
        assert time.time() < deadline, "the executor did not follow the new tab"
        ex.page.wait_for_timeout(50)
    popup = ex.page
    assert popup is not page
    assert act(ex, "left_click", shot(center(popup, "pad"))).ok
    assert [e["type"] for e in mouse_log(popup, "click")] == ["click"]
    popup.close()
    assert ex.page is page


@pytest.mark.display
def test_headed_launch_on_the_x_display(x_display, chromium_path):
    ex = BrowserExecutor.launch(headless=False, viewport=(640, 400), start_url=PAGE_URL)
    try:
        assert ex.screenshot().size == (640, 400)
        p = ex.page
        x, y = center(p, "pad")
        assert ex.execute(Action(action="left_click"), (x, y)).ok
        assert [(e["x"], e["y"]) for e in mouse_log(p, "click")] == [(round(x), round(y))]
    finally:
        ex.close()


def test_persistent_profile(chromium_path, tmp_path):
    profile = tmp_path / "profile"
    ex = BrowserExecutor.launch(viewport=(640, 400), start_url=PAGE_URL, user_data_dir=profile)
    try:
        assert ex.page.url == PAGE_URL
        x, y = center(ex.page, "pad")
        assert ex.execute(Action(action="left_click"), (x, y)).ok
    finally:
        ex.close()
    assert (profile / "Default").is_dir()


def test_goto_defaults_and_errors(ex):
    ex.goto(str(PAGES / "actions.html"))  # a path means its file:// URL
    assert ex.page.url == PAGE_URL
    with pytest.raises(ValueError, match="cannot open http://127.0.0.1:9/"):
        ex.goto("http://127.0.0.1:9/")  # nothing listens on the discard port
