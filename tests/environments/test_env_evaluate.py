"""Scoring exactly as OSWorld, setup steps, placeholders and skip reasons, on a display-less Controller
(commands run in a task sandbox: /home/user, uid 1000)."""

from __future__ import annotations

import http.server
import json
import os
import sqlite3
import subprocess
import threading
import time
import uuid
import venv
from pathlib import Path

import pytest

from agent.actions import Action
from environments import getters as G
from environments.controller import Controller
from environments.base import EvalResult
from environments.evaluate import as_task, evaluate_environment, evaluate_task, evaluation_blocker, is_fail
from environments.sandbox import Sandbox
from environments.setup import (SetupError, TaskSkipped, cdp_browser, fetch, offline_blocker, run_steps,
                                substitute)
from environments.tasks import SetupStep, Task
from tools.browser import shared_playwright

FAIL = Action(action="terminate", status="failure")
DONE = Action(action="terminate", status="success")


@pytest.fixture
def ctl(tmp_path) -> Controller:
    sandbox = Sandbox(tmp_path / "sandbox")
    yield Controller(sandbox=sandbox, cache_dir=tmp_path / "cache", display=":none", screen_size=(1920, 1080),
                     chrome_port=1, mirror=tmp_path / "mirror", task_id="task-1")
    sandbox.close()


def task(evaluator: dict, config: list | None = None, **extra) -> Task:
    return Task.model_validate({"id": "task-1", "instruction": "x", "config": config or [],
                                "evaluator": evaluator, **extra})


def rule(value) -> dict:
    return {"type": "rule", "rules": value}


def cmd(command: str) -> dict:
    return {"type": "vm_command_line", "command": command, "shell": True}


# ---- scoring rules ---------------------------------------------------------------------------
def test_is_fail_accepts_our_actions_and_osworld_forms():
    assert is_fail(FAIL) and is_fail("FAIL") and is_fail({"action_type": "FAIL"})
    assert not is_fail(DONE) and not is_fail("DONE") and not is_fail(None)


def test_infeasible_scores_one_only_when_last_action_is_fail(ctl):
    t = task({"func": "infeasible"})
    assert evaluate_task(t, ctl, [DONE, FAIL]).score == 1.0
    assert evaluate_task(t, ctl, [FAIL, DONE]).score == 0.0
    assert evaluate_task(t, ctl, []).score == 0.0
    assert evaluate_task(t, ctl, ["FAIL"]).status == "scored"


def test_fail_on_a_feasible_task_short_circuits_to_zero(ctl):
    t = task({"func": "exact_match", "result": rule("a"), "expected": rule({"expected": "a"})})
    assert evaluate_task(t, ctl, [DONE]).score == 1.0
    r = evaluate_task(t, ctl, [FAIL])
    assert r.status == "scored" and r.score == 0.0 and "FAIL" in r.reason


def test_and_is_mean_and_any_zero_is_zero(ctl):
    good = {"func": "fuzzy_match", "result": rule("abcd"), "expected": rule({"expected": "abce"})}
    t = task({"func": ["exact_match", good["func"]], "result": [rule("a"), good["result"]],
              "expected": [rule({"expected": "a"}), good["expected"]]})
    assert evaluate_task(t, ctl, []).score == pytest.approx((1.0 + 0.75) / 2)
    t0 = task({"func": ["exact_match", "exact_match"], "result": [rule("b"), rule("a")],
               "expected": [rule({"expected": "a"}), rule({"expected": "a"})]})
    r = evaluate_task(t0, ctl, [])
    assert r.score == 0.0 and len(r.details["metrics"]) == 1  # stopped at the first 0


def test_or_is_max_and_any_one_is_one(ctl):
    t = task({"func": ["exact_match", "fuzzy_match"], "conj": "or", "result": [rule("b"), rule("abcd")],
              "expected": [rule({"expected": "a"}), rule({"expected": "abce"})]})
    assert evaluate_task(t, ctl, []).score == pytest.approx(0.75)
    t1 = task({"func": ["exact_match", "exact_match"], "conj": "or", "result": [rule("a"), rule("zzz")],
               "expected": [rule({"expected": "a"}), rule({"expected": "a"})]})
    r = evaluate_task(t1, ctl, [])
    assert r.score == 1.0 and len(r.details["metrics"]) == 1


def test_options_are_passed_per_metric(ctl):
    t = task({"func": ["literal_match", "literal_match"], "result": [rule("A"), rule("A")],
              "expected": [rule("a"), rule("a")], "options": [{"ignore_case": True}, {}]})
    # second metric is case sensitive -> 0 -> "and" gives 0; first alone would be 1
    assert evaluate_task(t, ctl, []).score == 0.0
    t2 = task({"func": "literal_match", "result": rule("A"), "expected": rule("a"), "options": {"ignore_case": True}})
    assert evaluate_task(t2, ctl, []).score == 1.0


def test_evaluate_environment_reports_what_reset_found_before_scoring(ctl):
    t = task({"func": "infeasible"})
    assert evaluate_environment(None, ctl, [FAIL], None, None) == EvalResult(
        status="skipped", reason="no task was set by reset()")
    assert evaluate_environment(t, ctl, [FAIL], "needs the internet: x", "boom") == EvalResult(
        status="skipped", reason="needs the internet: x")
    assert evaluate_environment(t, ctl, [FAIL], None, "config[0] open: boom") == EvalResult(
        status="error", reason="setup failed: config[0] open: boom")
    scored = evaluate_environment(t, ctl, [FAIL], None, None)
    assert (scored.status, scored.score) == ("scored", 1.0)
    assert evaluate_environment(t, ctl, [DONE], None, None).score == 0.0


def test_as_task_takes_a_task_its_json_or_its_file(tmp_path):
    spec = {"id": "t", "instruction": "x", "evaluator": {"func": "infeasible"}}
    t = as_task(spec)
    assert isinstance(t, Task) and t.id == "t" and as_task(t) is t
    path = tmp_path / "os" / "t.json"
    path.parent.mkdir()
    path.write_text(json.dumps(spec))
    for given in (path, str(path)):
        loaded = as_task(given)
        assert (loaded.id, loaded.domain, loaded.path) == ("t", "os", path)
    with pytest.raises(FileNotFoundError, match="task file not found"):
        as_task(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="instruction"):
        as_task({"id": "t", "evaluator": {"func": "infeasible"}})


def test_missing_vm_file_scores_zero(ctl):
    t = task({"func": "compare_text_file",
              "result": {"type": "vm_file", "path": "/home/user/out.txt", "dest": "out.txt"},
              "expected": {"type": "vm_file", "path": "/home/user/gold.txt", "dest": "gold.txt"}})
    (ctl.home / "gold.txt").write_text("hi\n")
    r = evaluate_task(t, ctl, [])
    assert r.status == "scored" and r.score == 0.0
    (ctl.home / "out.txt").write_text("hi\n")
    assert evaluate_task(t, ctl, []).score == 1.0


def test_getter_file_not_found_scores_zero_with_and_but_or_goes_on(ctl):
    missing = {"type": "cache_file", "path": "never-written.txt"}
    t = task({"func": ["file_contains", "exact_match"], "result": [missing, rule("a")],
              "expected": [rule({"expected": ["x"]}), rule({"expected": "a"})]})
    r = evaluate_task(t, ctl, [])
    assert r.status == "scored" and r.score == 0.0 and "file not found" in r.reason
    t_or = task({"func": ["file_contains", "exact_match"], "conj": "or", "result": [missing, rule("a")],
                 "expected": [rule({"expected": ["x"]}), rule({"expected": "a"})]})
    assert evaluate_task(t_or, ctl, []).score == 1.0


def test_exception_in_getter_or_metric_is_an_error_not_a_pass(ctl):
    bad_getter = task({"func": "exact_match", "result": {"type": "rule"}, "expected": rule({"expected": "a"})})
    r = evaluate_task(bad_getter, ctl, [])
    assert r.status == "error" and r.score == 0.0 and "KeyError" in r.reason and "'rule'" in r.reason
    bad_metric = task({"func": "exact_match", "result": rule("a"), "expected": rule({"wrong_key": "a"})})
    r = evaluate_task(bad_metric, ctl, [])
    assert r.status == "error" and "metric exact_match raised KeyError" in r.reason


def test_unknown_func_or_getter_is_skipped_unsupported(ctl):
    r = evaluate_task(task({"func": "compare_audios", "result": rule(1), "expected": rule(1)}), ctl, [])
    assert r.status == "skipped" and r.reason.startswith("unsupported: metric 'compare_audios' (needs librosa")
    r = evaluate_task(task({"func": "no_such_metric", "result": rule(1), "expected": rule(1)}), ctl, [])
    assert (r.status, r.reason) == ("skipped", "unsupported: metric 'no_such_metric'")
    r = evaluate_task(task({"func": "exact_match", "result": {"type": "googledrive_file"},
                            "expected": rule({"expected": "a"})}), ctl, [])
    assert r.status == "skipped" and r.reason.startswith("unsupported: getter 'googledrive_file' (needs a Google")
    r = evaluate_task(task({"func": "compare_table", "result": rule(1), "expected": rule(1),
                            "options": {"rules": [{"type": "sheet_magic"}]}}), ctl, [])
    assert (r.status, r.reason) == ("skipped", "unsupported: compare_table rule 'sheet_magic'")
    r = evaluate_task(task({"func": "", "result": {}, "expected": {}}), ctl, [])
    assert r.status == "skipped" and "no evaluator" in r.reason


def test_unsupported_case_inside_a_metric_is_skipped(ctl):
    t = task({"func": "is_expected_bookmarks", "result": rule({"bookmark_bar": {"children": []}}),
              "expected": rule({"type": "other_folder_names", "names": []})})
    r = evaluate_task(t, ctl, [])
    assert r.status == "skipped" and r.reason.startswith("unsupported: is_expected_bookmarks type")


def test_postconfig_runs_before_the_getters(ctl):
    t = task({"func": "exact_match", "result": cmd("cat ~/flag"), "expected": rule({"expected": "ready\n"}),
              "postconfig": [{"type": "execute", "parameters": {"command": "echo ready > /home/user/flag",
                                                                "shell": "true"}}]})
    r = evaluate_task(t, ctl, [])
    assert r.score == 1.0 and (ctl.home / "flag").read_text() == "ready\n"


def test_command_getters_run_as_user_in_home_user(ctl):
    r = evaluate_task(task({"func": "exact_match", "result": cmd("pwd; echo $HOME; id -un; id -u; touch ~/x; ls ~"),
                            "expected": rule({"expected": "/home/user\n/home/user\nuser\n1000\nx\n"})}), ctl, [])
    assert r.score == 1.0, r.details
    assert (ctl.home / "x").is_file()
    err = G.GETTERS["vm_command_error"](ctl, {"command": "echo oops >&2", "shell": True})
    assert err == "oops\n"


def test_list_directory_getter_and_check_moved_jpgs(ctl):
    d = ctl.home / "Desktop" / "cpjpg"
    d.mkdir(parents=True)
    for n in ("a.jpg", "b.jpg"):
        (d / n).write_text("x")
    t = task({"func": "check_moved_jpgs", "result": {"type": "list_directory", "path": "/home/user/Desktop/cpjpg"},
              "expected": rule({"expected": ["b.jpg", "a.jpg"]})})
    assert evaluate_task(t, ctl, []).score == 1.0
    (d / "c.png").write_text("x")
    assert evaluate_task(t, ctl, []).score == 0.0


# ---- setup steps -----------------------------------------------------------------------------
def test_placeholders_are_substituted_in_execute(ctl):
    ctl.client_password = "s3cret"
    cmdline = "echo {CLIENT_PASSWORD} {SCREEN_WIDTH}x{SCREEN_HEIGHT} {SCREEN_WIDTH_HALF},{SCREEN_HEIGHT_HALF}"
    assert substitute(cmdline, ctl) == "echo s3cret 1920x1080 960,540"
    assert substitute(["python", "-c", "click({SCREEN_WIDTH_HALF})"], ctl) == ["python", "-c", "click(960)"]
    run_steps([SetupStep(type="execute", parameters={"command": cmdline + " > out.txt", "shell": True})], ctl)
    assert (ctl.home / "out.txt").read_text() == "s3cret 1920x1080 960,540\n"


def test_execute_list_form_stdout_capture_and_until(ctl):
    steps = [
        SetupStep(type="command", parameters={"command": ["bash", "-c", "echo listed"], "stdout": "out.log"}),
        SetupStep(type="execute", parameters={
            "command": "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; cat n", "shell": True,
            "until": {"stdout": "3"}}),
    ]
    run_steps(steps, ctl)
    assert (ctl.task_cache / "out.log").read_text() == "listed\n"
    assert (ctl.home / "n").read_text() == "3\n"  # re-run until stdout contained 3
    # conditions are alternatives: the return code already matches, so it runs once
    run_steps([SetupStep(type="execute", parameters={"command": "echo x >> runs", "shell": True,
                                                     "until": {"returncode": 0, "stdout": "never"}})], ctl)
    assert (ctl.home / "runs").read_text() == "x\n"
    assert G.GETTERS["cache_file"](ctl, {"path": "out.log"}).endswith("out.log")


def test_failing_command_does_not_abort_setup_but_a_broken_step_does(ctl):
    run_steps([SetupStep(type="execute", parameters={"command": "exit 3", "shell": True})], ctl)  # rc not checked
    with pytest.raises(SetupError, match=r"config\[0\] sleep: bad parameters"):
        run_steps([SetupStep(type="sleep", parameters={"secs": 1})], ctl)


def test_unknown_step_is_skipped_unsupported(ctl):
    with pytest.raises(TaskSkipped, match="unsupported: setup step 'tidy_desktop'"):
        run_steps([SetupStep(type="tidy_desktop")], ctl)
    assert offline_blocker(task({"func": "infeasible"}, [{"type": "tidy_desktop", "parameters": {}}]), ctl) \
        == "unsupported: setup step 'tidy_desktop'"


@pytest.mark.parametrize("config,extra,reason", [
    ([{"type": "googledrive", "parameters": {"settings_file": "x", "operation": ["delete"], "args": [{}]}}], {},
     "needs a Google account: googledrive step"),
    ([{"type": "login", "parameters": {"settings_file": "x", "platform": "googledrive"}}], {},
     "needs a Google account: login step"),
    ([], {"proxy": True}, "needs the internet: proxy=true task"),
    ([{"type": "download", "parameters": {"files": [{"url": "https://drive.usercontent.google.com/download?id=1",
                                                      "path": "setup.sh"}]}}], {},
     "download not available offline: https://drive.usercontent.google.com/download?id=1"),
    ([{"type": "launch", "parameters": {"command": ["gimp-2.99-not-installed", "x.png"]}}], {},
     "missing app: gimp-2.99-not-installed"),
    ([], {"related_apps": ["vs_code"], "snapshot": "vscode"}, "missing app: vs_code"),
    ([{"type": "execute", "parameters": {"command": "echo {CLIENT_PASSWORD} | sudo -S chsh -s $(which zsh)",
                                         "shell": True}}], {},
     "unsupported: the task runs 'chsh', which needs root in OSWorld's VM"),
])
def test_offline_skip_reasons(ctl, config, extra, reason):
    t = task({"func": "infeasible"}, config, **extra)  # VS Code is not a Debian package: `code` is never here
    assert offline_blocker(t, ctl).startswith(reason)


def test_root_commands_in_getters_are_found_and_package_installs_run(ctl):
    t = task({"func": "is_utc_0", "result": {"type": "vm_command_line", "command": "timedatectl status"}})
    assert offline_blocker(t, ctl) == ("unsupported: the task runs 'timedatectl', which needs root in OSWorld's "
                                       "VM; the sandbox's user has none")
    harmless = task({"func": "check_include_exclude", "result": cmd("getent passwd user; cat /etc/passwd | wc -l"),
                     "expected": rule({"include": [], "exclude": []})})
    assert offline_blocker(harmless, ctl) is None
    # package installs run: the apt shims answer them from what is installed (dpkg)
    install = "echo password | sudo -S apt-get install -y bubblewrap && sudo apt install python3-tk -y"
    t = task({"func": "infeasible"}, [{"type": "execute", "parameters": {"command": install, "shell": True}}])
    assert offline_blocker(t, ctl) is None
    assert ctl.run(install, shell=True).returncode == 0
    r = ctl.run("sudo apt-get install -y qvl-no-such-package", shell=True)
    assert r.returncode == 100 and "qvl-no-such-package is not installed" in r.error
    assert ctl.run("apt-get update && apt upgrade -y", shell=True).returncode == 0
    assert ctl.run("apt-get remove -y bubblewrap", shell=True).returncode == 100
    assert ctl.run(["dpkg-query", "-W", "-f=${Status}", "bubblewrap"]).output == "install ok installed"


def test_download_from_mirror_conventions_and_file_url(ctl, tmp_path):
    hf = "https://huggingface.co/datasets/xlangai/ubuntu_osworld_file_cache/resolve/main/os/task-1/setup.sh"
    (ctl.mirror / "os/task-1").mkdir(parents=True)
    (ctl.mirror / "os/task-1/setup.sh").write_text("echo from-hf-mirror\n")
    gd = "https://drive.usercontent.google.com/download?id=abc"
    (ctl.mirror / "files").mkdir()
    (ctl.mirror / "files/eval.sh").write_text("echo from-index\n")
    (ctl.mirror / "index.json").write_text(json.dumps({gd: "files/eval.sh"}))
    other = "https://example.org/data.txt"
    (ctl.mirror / "task-1").mkdir()
    (ctl.mirror / "task-1" / f"{uuid.uuid5(uuid.NAMESPACE_URL, other)}_data.txt").write_text("osworld-cache\n")
    local = tmp_path / "local.txt"
    local.write_text("file-url\n")
    steps = [SetupStep(type="download", parameters={"files": [
        {"url": hf, "path": "setup.sh"}, {"url": gd, "path": "/home/user/sub/eval.sh"},
        {"url": other, "path": "~/data.txt"}, {"url": local.as_uri(), "path": "local.txt"}]})]
    assert offline_blocker(task({"func": "infeasible"}, [s.model_dump() for s in steps]), ctl) is None
    run_steps(steps, ctl)
    assert (ctl.home / "setup.sh").read_text() == "echo from-hf-mirror\n"
    assert (ctl.home / "sub/eval.sh").read_text() == "echo from-index\n"
    assert (ctl.home / "data.txt").read_text() == "osworld-cache\n"
    assert (ctl.home / "local.txt").read_text() == "file-url\n"


def test_download_from_a_loopback_server(ctl, tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "f.txt").write_text("served\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path / "srv"), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/f.txt"
        assert fetch(url, ctl) == b"served\n"
    finally:
        server.shutdown()


def test_cloud_file_expected_comes_from_the_mirror_or_skips(ctl):
    url = "https://huggingface.co/datasets/xlangai/ubuntu_osworld_file_cache/resolve/main/os/task-1/gold.txt"
    t = task({"func": "compare_text_file", "result": {"type": "vm_file", "path": "out.txt", "dest": "out.txt"},
              "expected": {"type": "cloud_file", "path": url, "dest": "gold.txt"}})
    assert evaluation_blocker(t, ctl) == f"download not available offline: {url}"
    assert evaluate_task(t, ctl, []).status == "skipped"
    (ctl.mirror / "os/task-1").mkdir(parents=True)
    (ctl.mirror / "os/task-1/gold.txt").write_text("42\n")
    (ctl.home / "out.txt").write_text("42\n")
    assert evaluate_task(t, ctl, []).score == 1.0


def test_cdp_browser_without_chromium_is_a_setup_error_and_gives_the_driver_back(ctl):
    with pytest.raises(SetupError, match="no chromium DevTools endpoint at http://127.0.0.1:1 "):
        with cdp_browser(ctl, tries=1):
            pass
    assert getattr(shared_playwright._local, "users", 0) == 0 and shared_playwright._local.driver is None


def test_update_browse_history_then_history_getter(ctl):
    history = [{"url": "https://www.youtube.com/watch?v=1", "title": "v", "visit_time_from_now_in_seconds": 3600},
               {"url": "https://www.bbc.co.uk/", "title": "BBC", "visit_time_from_now_in_seconds": 60}]
    run_steps([SetupStep(type="update_browse_history", parameters={"history": history})], ctl)
    rows = G.GETTERS["history"](ctl, {"dest": "history.sqlite"})
    assert [r[:2] for r in rows] == [("https://www.youtube.com/watch?v=1", "v"), ("https://www.bbc.co.uk/", "BBC")]
    now_chrome_us = (time.time() + 11644473600) * 1e6
    assert abs((now_chrome_us - rows[0][2]) / 1e6 - 3600) < 60
    con = sqlite3.connect(ctl.host_path("~/.config/google-chrome/Default/History"))
    assert con.execute("select count(*) from visits where transition = 805306368").fetchone()[0] == 2
    con.close()
    t = task({"func": "check_history_deleted", "result": {"type": "history", "dest": "history.sqlite"},
              "expected": rule({"type": "keywords", "keywords": ["youtube"]})})
    assert evaluate_task(t, ctl, []).score == 0.0


def test_chrome_profile_getters_read_the_sandbox_profile(ctl):
    prefs = ctl.host_path("/home/user/.config/google-chrome/Default/Preferences")
    assert G.GETTERS["default_search_engine"](ctl, {}) == "Google"  # OSWorld's default
    assert G.GETTERS["chrome_font_size"](ctl, {})["default_font_size"] == 16
    prefs.parent.mkdir(parents=True)
    prefs.write_text(json.dumps({"default_search_provider_data": {"template_url_data": {"short_name": "Bing"}},
                                 "webkit": {"webprefs": {"default_font_size": 20}}, "enable_do_not_track": True,
                                 "profile": {"name": "Work"}, "session": {"restore_on_startup": 5}}))
    assert G.GETTERS["default_search_engine"](ctl, {}) == "Bing"
    assert G.GETTERS["chrome_font_size"](ctl, {}) == {"default_font_size": 20}
    assert G.GETTERS["enable_do_not_track"](ctl, {}) == "true"
    assert G.GETTERS["profile_name"](ctl, {}) == "Work"
    assert G.GETTERS["new_startup_page"](ctl, {}) == "true"
    assert G.GETTERS["bookmarks"](ctl, {}) == []  # no Bookmarks file yet (OSWorld's value)
    del_session = {"profile": {"name": "Work"}}
    prefs.write_text(json.dumps(del_session))
    assert G.GETTERS["new_startup_page"](ctl, {}) == "true"  # no session key: a fresh profile
    prefs.write_text("{not json")
    assert G.GETTERS["new_startup_page"](ctl, {}) == "Google"  # OSWorld's fallback on any error


def test_cookie_getter_with_is_cookie_deleted(ctl):
    db = ctl.host_path("~/.config/google-chrome/Default/Cookies")
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE cookies (creation_utc INTEGER, host_key TEXT, name TEXT, value TEXT)")
    con.execute("INSERT INTO cookies VALUES (1, '.amazon.com', 'session-id', 'x'), (2, '.bbc.co.uk', 'ckns', 'y')")
    con.commit()
    con.close()
    t = task({"func": "is_cookie_deleted", "result": {"type": "cookie_data", "dest": "Cookies"},
              "expected": rule({"type": "domains", "domains": [".amazon.com"]})})
    r = evaluate_task(t, ctl, [])
    assert r.score == 0.0 and ".amazon.com" in r.details["metrics"][0]["result"]
    con = sqlite3.connect(db)
    con.execute("DELETE FROM cookies WHERE host_key LIKE '%amazon%'")
    con.commit()
    con.close()
    assert evaluate_task(t, ctl, []).score == 1.0
    db.unlink()
    r = evaluate_task(t, ctl, [])  # no Cookies database at all: the getter gives None, which scores 0
    assert (r.status, r.score) == ("scored", 0.0) and r.details["metrics"][0]["result"] is None


def test_installed_extensions_getter_with_its_metric(ctl):
    # OSWorld reads the names from Preferences' extensions.settings (each with its manifest)
    prefs = ctl.host_path("~/.config/google-chrome/Default/Preferences")
    prefs.parent.mkdir(parents=True)

    def installed(*names):
        prefs.write_text(json.dumps({"extensions": {"settings": {
            f"id{i}": {"path": f"/ext/{i}", "manifest": {"name": n}} for i, n in enumerate(names)}}}))

    t = task({"func": "is_expected_installed_extensions", "result": {"type": "find_installed_extension_name"},
              "expected": rule({"type": "list", "expected": ["Zotero Connector"]})})
    installed("Zotero Connector", "uBlock")
    assert evaluate_task(t, ctl, []).score == 1.0
    assert G.GETTERS["find_unpacked_extension_path"](ctl, {}) == ["/ext/0", "/ext/1"]
    installed("Other")
    assert evaluate_task(t, ctl, []).score == 0.0


def test_vm_file_multi_gives_and_missing(ctl):
    (ctl.home / "a.txt").write_text("a")
    got = G.GETTERS["vm_file"](ctl, {"path": ["/home/user/a.txt", "/home/user/b.txt"], "dest": ["a.txt", "b.txt"],
                                     "multi": True, "gives": [0, 1]})
    assert got[0].endswith("a.txt") and Path(got[0]).read_text() == "a" and got[1] is None
    assert G.GETTERS["vm_file"](ctl, {"path": "/home/user/none.txt", "dest": "none.txt"}) is None


def test_app_config_getters(ctl):
    rc = ctl.host_path("~/.config/vlc/vlcrc")
    rc.parent.mkdir(parents=True)
    rc.write_text("input-record-path=/home/user/Videos\n")
    t = task({"func": "is_vlc_recordings_folder", "result": {"type": "vlc_config", "dest": "vlcrc"},
              "expected": rule({"recording_file_path": "/home/user/Videos"})})
    assert evaluate_task(t, ctl, []).score == 1.0


def test_data_delete_getter_reads_chromiums_own_migration_flags_as_unset(ctl):
    prefs = ctl.host_path("~/.config/google-chrome/Default/Preferences")
    prefs.parent.mkdir(parents=True)
    get = G.GETTERS["data_delete_automacally"]
    assert get(ctl, {}) == "Google"  # no Preferences: OSWorld's fallback
    for values, want in ((None, "false"), ({"has_migrated_local_network_access": True}, "false"),
                         ({"has_migrated_local_network_access": True, "cookies": 4}, "true"), ({}, "true")):
        profile = {"name": "x"} if values is None else {"default_content_setting_values": values}
        prefs.write_text(json.dumps({"profile": profile}))
        assert get(ctl, {}) == want, values


def test_content_from_vm_file_gives_pandas_strings(ctl):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for row in (["name", "n", "x", "f"], ["a", 1, "q", 2.5], ["b", 2, None, 3.0]):
        ws.append(row)
    wb.save(ctl.host_path("~/r.xlsx", write=True))
    got = G.GETTERS["content_from_vm_file"](ctl, {"path": "/home/user/r.xlsx", "file_type": "xlsx",
                                                  "file_content": "last_row"})
    assert got == ["b", "2", "nan", "3.0"]  # OSWorld: pandas' last row, astype(str)
    with pytest.raises(FileNotFoundError):
        G.GETTERS["content_from_vm_file"](ctl, {"path": "/home/user/none.xlsx", "file_type": "xlsx",
                                                "file_content": "last_row"})


def test_sandbox_runs_from_a_venv_under_tmp(tmp_path):
    """The README installs into a venv inside the clone; a clone under /tmp (or a home) is a folder the
    sandbox replaces, so its interpreter must be bound back in or no task can start."""
    env_dir = tmp_path / "venv"  # pytest's tmp_path is under /tmp
    venv.EnvBuilder(system_site_packages=True, symlinks=True).create(env_dir)
    script = ("import sys; from pathlib import Path; from environments.sandbox import Sandbox\n"
              "s = Sandbox(Path(sys.argv[1]))\n"
              "try:\n    r = s.run(['sh', '-c', 'id -u; echo $HOME'])\n    print(r.returncode, r.output.split())\n"
              "finally:\n    s.close()\n")
    root = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([str(env_dir / "bin" / "python"), "-c", script, str(tmp_path / "sandbox")],
                       capture_output=True, text=True, timeout=120, cwd=root,
                       env={**os.environ, "PYTHONPATH": root})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[0] == "0 ['1000', '/home/user']", r.stdout
