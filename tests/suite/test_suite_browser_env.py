"""BrowserEnvironment: start page, OSWorld-style browser setup steps, real clicks, scoring, skip reasons."""

from __future__ import annotations

import json

import httpx
import pytest

from agent.actions import Action
from environments.browser import BrowserEnvironment, runs_in_browser, start_on_sites
from environments.sites import serve_bundled_sites
from environments.suite import EvalSettings, Workbench, load_tasks
from environments.tasks import Task

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def env(chromium_path):
    with BrowserEnvironment() as e:
        yield e


def _task(**over) -> dict:
    spec = {"id": "t", "instruction": "Book something.", "snapshot": "browser",
            "config": [{"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["{SITE}/flights/"]}}],
            "evaluator": {"func": "check_json",
                          "result": {"type": "vm_file", "path": "{SITE_STATE}", "dest": "state.json"},
                          "expected": {"type": "rule", "rules": {"expect": [
                              {"key": ["bookings", 0, "destination"], "method": "eq", "ref": "LIS"}]}}}}
    spec.update(over)
    return spec


def test_start_url_and_plain_reset(chromium_path):
    with serve_bundled_sites() as url, BrowserEnvironment(start_url=url + "/") as env:
        obs = env.reset()
        assert obs.url == url + "/"
        assert obs.screenshot.size == (1280, 800)
        assert env.executor.page.title() == "Local Apps"


def test_task_setup_click_and_score(env):
    obs = env.reset(_task())
    assert obs.url.endswith("/flights/") and obs.url.startswith("http://127.0.0.1:")
    assert obs.extra["task_id"] == "t" and "skipped" not in obs.extra
    page = env.executor.page
    # the + button of the passenger counter sits at (548, 378) px at 1280x800
    obs, outcome = env.step(Action(action="left_click", coordinate=(428, 472)), (548, 378))
    assert outcome.ok and page.inner_text("#pax-count") == "2"
    assert env.evaluate().model_dump(include={"status", "score"}) == {"status": "scored", "score": 0.0}

    # book through the page, then the same evaluator passes: it reads the state file the server wrote
    page.fill("#origin", "Berlin")
    page.fill("#destination", "Lisbon")
    page.fill("#date", "12 March")
    page.click("#search-button")
    page.click("#select-1")
    for i, (first, last) in enumerate([("Ada", "Lovelace"), ("Alan", "Turing")], 1):
        page.fill(f"#first-name-{i}", first)
        page.fill(f"#last-name-{i}", last)
    page.fill("#email", "ada@example.com")
    page.click("#continue-button")
    page.click("#confirm-button")
    page.wait_for_selector("#booking-code:not(:empty)")
    result = env.evaluate()
    assert (result.status, result.score) == ("scored", 1.0), result
    assert json.loads(env.sites.state_file.read_text())["bookings"][0]["passengers"][1]["last_name"] == "Turing"

    env.reset(_task())  # a new task starts from empty site state
    assert env.evaluate().score == 0.0 and env.sites.read_state()["bookings"] == []


def test_harness_tab_steps_and_tab_getters_reach_the_environments_browser(env):
    tabs = ["{SITE}/forms/", "{SITE}/flights/"]
    spec = _task(config=[{"type": "chrome_open_tabs", "parameters": {"urls_to_open": tabs}}],
                 evaluator={"func": ["is_expected_tabs", "is_expected_active_tab"],
                            # OSWorld rebuilds the active URL from the address bar, which elides http://
                            "result": [{"type": "open_tabs_info"},
                                       {"type": "active_tab_info", "goto_prefix": "http://"}],
                            "expected": [{"type": "rule", "rules": {"type": "url", "urls": tabs}},
                                         {"type": "rule", "rules": {"type": "url", "url": "{SITE}/flights/"}}]})
    env.executor.page.context.new_page()  # a tab the previous task left open goes on reset
    obs = env.reset(spec)
    base = env.sites.url
    assert obs.url == base + "/flights/"  # the last tab opened is the one the agent sees
    assert [p.url for p in env.executor.page.context.pages] == [base + "/forms/", base + "/flights/"]
    assert obs.screenshot.size == (1280, 800) and env.executor.page.title() == "SkyLocal Flights"
    result = env.evaluate()  # the getters read the tabs over CDP, beside the executor's Playwright
    assert (result.status, result.score) == ("scored", 1.0), result
    env.executor.page.close()
    result = env.evaluate()
    assert (result.status, result.score) == ("scored", 0.0), result
    assert env.reset(_task()).url == base + "/flights/"
    assert len(env.executor.page.context.pages) == 1


def test_fail_on_infeasible_and_feasible(env):
    env.reset(_task(evaluator={"func": "infeasible"}))
    env.step(Action(action="terminate", status="failure"))
    assert env.evaluate().score == 1.0
    env.reset(_task())
    env.step(Action(action="terminate", status="failure"))
    result = env.evaluate()
    assert result.score == 0.0 and "FAIL" in result.reason


def test_desktop_only_steps_are_skipped_with_a_reason(env):
    spec = _task(config=[{"type": "execute", "parameters": {"command": ["touch", "/tmp/x"]}},
                         {"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["{SITE}/"]}}])
    assert not runs_in_browser(Task.model_validate(spec))
    obs = env.reset(spec)
    assert "needs a desktop" in obs.extra["skipped"] and "execute" in obs.extra["skipped"]
    result = env.evaluate()
    assert result.status == "skipped" and "needs a desktop" in result.reason


def test_bundled_tasks_split_between_browser_and_desktop():
    kinds = {t.domain: runs_in_browser(t) for t in load_tasks()}
    assert kinds == {"flights": True, "forms": True, "settings": True, "os": False, "text_editing": False,
                     "chrome": False, "gimp": False, "vlc": False, "libreoffice_calc": False,
                     "libreoffice_writer": False, "libreoffice_impress": False}


def test_bundled_booking_evaluator_wants_exactly_the_requested_booking(env):
    task = next(t for t in load_tasks() if t.id == "flights-berlin-lisbon")
    request = {"origin": "Berlin", "destination": "Lisbon", "date": "12 March", "email": "ada@example.com",
               "passengers": [{"first_name": "Ada", "last_name": "Lovelace"}]}

    def book(**change):
        body = {**request, **change}
        flight = httpx.get(env.sites.url + "/api/flights", params=body).json()["flights"][0]["flight"]
        httpx.post(env.sites.url + "/api/bookings", json={**body, "flight": flight}).raise_for_status()

    env.reset(task)
    assert env.evaluate().score == 0.0  # nothing booked
    book()
    assert env.evaluate().score == 1.0
    book()
    assert env.evaluate().score == 0.0  # booked twice
    for change in ({"date": "13 March"}, {"destination": "Madrid"}, {"email": "ada@example.org"},
                   {"passengers": [{"first_name": "Ada", "last_name": "Byron"}]},
                   {"passengers": [{"first_name": "Ada", "last_name": "Lovelace"}] * 2}):
        env.reset(task)
        book(**change)
        assert env.evaluate().score == 0.0, change


@pytest.mark.display
def test_a_worker_keeps_its_browser_while_desktop_tasks_use_cdp(chromium_path):
    """The desktop's CDP setup steps and getters share the thread's Playwright with the live browser."""
    bench = Workbench(EvalSettings())
    try:
        browser_task = Task.model_validate(_task())
        desktop_task = Task.model_validate(_task(
            config=[{"type": "launch", "parameters": {"command": ["google-chrome", "{SITE}/flights/"]}},
                    {"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["{SITE}/forms/"]}}],
            # OSWorld's chrome_open_tabs closes the tab the browser started with: only forms stays
            evaluator={"func": "is_expected_tabs", "result": {"type": "open_tabs_info"},
                       "expected": {"type": "rule", "rules": {"type": "url", "urls": ["{SITE}/forms/"]}}}))
        assert runs_in_browser(browser_task) and not runs_in_browser(desktop_task)
        browser = bench.environment(browser_task)
        assert browser.reset(browser_task).url == bench.sites.url + "/flights/"
        desktop = bench.environment(desktop_task)
        assert bench.environment(browser_task) is browser and bench.environment(desktop_task) is desktop
        obs = desktop.reset(start_on_sites(desktop_task, bench.sites))
        assert "skipped" not in obs.extra and "setup_error" not in obs.extra, obs.extra
        result = desktop.evaluate()
        assert (result.status, result.score) == ("scored", 1.0), result
        assert browser.reset(browser_task).url == bench.sites.url + "/flights/"  # still alive
        assert browser.evaluate().status == "scored"
    finally:
        bench.close()
