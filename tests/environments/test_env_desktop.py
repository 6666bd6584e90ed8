"""DesktopEnvironment in its task sandbox: /home/user and uid 1000, the private Xvfb and session bus,
terminal binding, chrome shim + CDP, apt shims, cleanup, and real OSWorld task files run with their own
setup steps and evaluators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import http.server
import threading

import httpx
import pytest

from environments import getters as G
from environments.desktop import PRESET_HOME, SANDBOX_MARK, DesktopEnvironment
from environments.sandbox import _python_dirs
from environments.setup import cdp_browser

pytestmark = pytest.mark.display
REPO = Path(__file__).resolve().parents[2]
OSWORLD = Path(__file__).parent / "osworld"
OS_MOVE = OSWORLD / "os/7688b85f-87a4-4e4a-b2f8-f3d6c3f29b82.json"
OS_RENAME = OSWORLD / "os/e0df059f-28a6-4169-924f-b9623e7184cc.json"
OS_INFEASIBLE = OSWORLD / "os/a462a795-fdc7-4b23-b689-e8b6df786b78.json"
CHROME_BING = OSWORLD / "chrome/bb5e4c0d-f964-439c-97b6-bdb9747de3f4.json"
CHROME_BOOKMARK = OSWORLD / "chrome/2ad9387a-65d8-4e33-ad5b-7580065a27ca.json"


def _pid_namespace(env: DesktopEnvironment) -> str:
    """The pid namespace of the environment's sandbox (that of bwrap's child, the sandbox's init)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == env.sandbox.pid:
                return os.readlink(f"/proc/{pid}/ns/pid")
        except (OSError, IndexError):
            pass
    raise AssertionError("the sandbox has no init process")


def _in_namespace(ns: str) -> list[int]:
    """Host pids of the live processes in pid namespace `ns`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == ns and \
                    open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def _comms(env: DesktopEnvironment) -> list[str]:
    """Names of the processes the task sees (ps in the sandbox)."""
    return env.controller.run(["ps", "-e", "-o", "comm="]).output.split()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    t = tmp_path_factory.mktemp("home-template")
    (t / "Documents").mkdir()
    (t / "Documents" / "notes.txt").write_text("original\n")
    return t


@pytest.fixture(scope="module")
def env(template):
    e = DesktopEnvironment(home_template=template, settle_s=0.2)
    yield e
    e.close()


def test_private_display_is_1920x1080_with_an_ewmh_wm(env):
    obs = env.reset()
    assert obs.screenshot.size == (1920, 1080) and obs.screenshot.mode == "RGB"
    assert env.controller.wmctrl("-m").output.startswith("Name: Openbox")
    assert env.display != os.environ.get("DISPLAY")


def test_reset_restores_the_home_template(env):
    env.reset()
    home = env.home
    assert home != Path.home() and not (home / SANDBOX_MARK).exists()  # our own home needs no mark
    assert (home / "Documents/notes.txt").read_text() == "original\n"
    # a task writes through /home/user, which is the sandbox home
    env.controller.run("echo changed > /home/user/Documents/notes.txt; touch ~/Desktop/junk.txt", shell=True)
    assert (home / "Desktop/junk.txt").exists()
    assert (home / "Documents/notes.txt").read_text() == "changed\n"
    env.reset()
    assert not (home / "Desktop/junk.txt").exists()
    assert (home / "Documents/notes.txt").read_text() == "original\n"
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) == \
        ["Desktop", "Documents", "Downloads", "Music", "Pictures", "Videos"]


def test_ctrl_alt_t_opens_a_window_titled_terminal(env):
    env.reset()
    assert "Terminal" not in env.controller.window_titles()
    # the way OSWorld tasks do it: a `python` on PATH that has pyautogui
    r = env.controller.run(["python", "-c", "import pyautogui; pyautogui.hotkey('ctrl', 'alt', 't')"])
    assert r.returncode == 0, r.error
    assert env.controller.wait_for_window(["Terminal"], timeout=10) == "Terminal"
    assert "Terminal" in env.controller.run(["wmctrl", "-l"]).output
    size = G.GETTERS["vm_window_size"](env.controller, {"app_class_name": "xterm"})
    assert 100 < size["width"] < 1920 and 100 < size["height"] < 1080
    assert G.GETTERS["vm_screen_size"](env.controller, {}) == {"width": 1920, "height": 1080}
    # the terminal's shell runs in the sandbox home, and reset closes it
    env.reset()
    assert "Terminal" not in env.controller.window_titles()


def test_google_chrome_shim_opens_chromium_with_cdp(env):
    obs = env.reset(CHROME_BING)
    assert "skipped" not in obs.extra and "setup_error" not in obs.extra
    port = env.controller.chrome_port
    version = None
    for _ in range(60):
        try:
            version = httpx.get(f"http://127.0.0.1:{port}/json/version", timeout=2).json()
            break
        except httpx.HTTPError:
            time.sleep(0.25)
    assert version is not None and "Chrome/" in version["Browser"]
    assert env.controller.wait_for_window(["Chromium"], timeout=20)
    assert (env.home / ".config/google-chrome/Default").is_dir()  # the profile lives in the sandbox
    r = env.evaluate()
    assert (r.status, r.score, r.details["metrics"][0]["result"]) == ("scored", 0.0, "Google")


def test_the_task_runs_as_uid_1000_in_a_real_home_user(env):
    env.reset()
    r = env.controller.run("id -u; id -un; echo $HOME; pwd; realpath ~/Desktop; getent passwd user", shell=True)
    assert r.output.splitlines() == ["1000", "user", "/home/user", "/home/user", "/home/user/Desktop",
                                     "user:x:1000:1000:user:/home/user:/bin/bash"]
    # what the task writes under /home/user is the environment's home folder; the host is read-only
    assert env.controller.run("echo hi > /home/user/Documents/a.txt", shell=True).returncode == 0
    assert (env.home / "Documents/a.txt").read_text() == "hi\n"
    r = env.controller.run("touch /usr/qvl-test; grep CapEff /proc/self/status", shell=True)
    assert "Read-only file system" in r.error and r.output.split() == ["CapEff:", "0000000000000000"]
    # the host's homes are hidden; only this interpreter's own folder shows, if it lives there (pyenv)
    visible = {Path(d).relative_to("/root").parts[0] for d in _python_dirs() if d.startswith("/root/")}
    assert set(env.controller.run(["ls", "-A", "/root"]).output.split()) == visible
    assert env.controller.run(["ls", "-A", "/home"]).output == "user\n"
    # root on the host is not root in the task: VLC, which refuses to run as root, runs
    r = env.controller.run(["vlc", "--intf", "dummy", "vlc://quit"], timeout=60)
    assert r.returncode == 0 and "not supposed to be run as root" not in r.error, r.error[-500:]
    # the task sees only its own processes: its session, and no host process
    seen = set(_comms(env)) - {"ps"}
    interpreter = Path(sys.executable).name[:15]  # the sandbox server runs under this interpreter (comm: 15 chars)
    assert {"Xvfb", "dbus-daemon", "openbox"} <= seen <= {"bwrap", interpreter, "Xvfb", "dbus-daemon", "openbox"}


def test_session_bus_and_gsettings_write_to_dconf_in_the_home(env):
    task = {"id": "gsettings", "instruction": "x", "config": [
        {"type": "execute", "parameters": {"command": [
            "gsettings", "set", "org.gnome.desktop.interface", "text-scaling-factor", "1.25"]}},
        {"type": "execute", "parameters": {"command": "gsettings set org.gnome.no.such.schema key 1",
                                           "shell": True}}],
            "evaluator": {"func": "check_text_enlarged", "result": {"type": "vm_command_line", "command": [
                "gsettings", "get", "org.gnome.desktop.interface", "text-scaling-factor"]}}}
    obs = env.reset(task)
    assert "setup_error" not in obs.extra and "skipped" not in obs.extra
    assert env.controller.run(["sh", "-c", "echo $DBUS_SESSION_BUS_ADDRESS; test -S /run/user/1000/bus"]
                              ).output == "unix:path=/run/user/1000/bus\n"
    assert (env.home / ".config/dconf/user").is_file()  # written by dconf-service, in the task's home
    r = env.evaluate()
    assert (r.status, r.score, r.details["metrics"][0]["result"]) == ("scored", 1.0, "1.25\n")
    # OSWorld ignores a failing setup command; the evaluation names it
    [failed] = r.details["failed_commands"]
    assert failed["returncode"] == 1 and "No such schema" in failed["error"]
    env.reset(task)  # a reset starts from the template: the setting is back to its default, then set again
    assert env.evaluate().score == 1.0
    env.reset()
    out = env.controller.run(["gsettings", "get", "org.gnome.desktop.interface", "text-scaling-factor"]).output
    assert out == "1.0\n"
    # the database is the preset's again: OSWorld's image has the screen lock off
    assert (env.home / ".config/dconf/user").read_bytes() == (PRESET_HOME / ".config/dconf/user").read_bytes()
    assert env.controller.run(["gsettings", "get", "org.gnome.desktop.screensaver", "lock-enabled"]).output == "false\n"


def test_apt_install_steps_run_and_answer_from_what_is_installed(env):
    task = {"id": "apt", "instruction": "x", "config": [
        {"type": "execute", "parameters": {"command": "echo {CLIENT_PASSWORD} | sudo -S apt install -y xterm",
                                           "shell": True}},
        {"type": "execute", "parameters": {"command": "sudo apt-get install -y qvl-no-such-package", "shell": True}}],
            "evaluator": {"func": "infeasible"}}
    obs = env.reset(task)
    assert "skipped" not in obs.extra and "setup_error" not in obs.extra, obs.extra
    [failed] = env.evaluate().details["failed_commands"]
    assert failed["returncode"] == 100 and "qvl-no-such-package is not installed" in failed["error"]


def test_python3_shim_has_pyautogui(env):
    env.reset()
    for python in ("python", "python3"):
        r = env.controller.run([python, "-c", "import pyautogui; print(pyautogui.size())"])
        assert r.output.strip() == "Size(width=1920, height=1080)", r.error


def test_reset_ends_every_task_process(env):
    env.reset(CHROME_BING)
    assert env.controller.wait_for_window(["Chromium"], timeout=20)
    env.controller.run("nohup sleep 300 >/dev/null 2>&1 & setsid sleep 301 >/dev/null 2>&1 &", shell=True)
    ns = _pid_namespace(env)
    before = set(_in_namespace(ns))
    assert {"chromium", "sleep"} <= set(_comms(env))
    env.reset()
    after = set(_in_namespace(ns))
    assert not {"chromium", "sleep"} & set(_comms(env))
    assert len(after) <= 5 and len(before - after) >= 5  # only the session (init, server, X, bus, wm) is left


def test_chrome_task_scores_one_when_solved_and_zero_when_not(env):
    env.reset(CHROME_BOOKMARK)
    assert env.evaluate().score == 0.0
    # Solve it through the browser itself: chrome://bookmarks exposes the bookmarks API.
    with cdp_browser(env.controller) as browser:
        page = browser.contexts[0].new_page()
        page.goto("chrome://bookmarks")
        page.evaluate("new Promise(r => chrome.bookmarks.create({parentId: '1', title: 'Favorites'}, r))")
    deadline = time.time() + 15  # chromium writes the Bookmarks file a moment later
    while (r := env.evaluate()).score != 1.0 and time.time() < deadline:
        time.sleep(0.5)
    assert (r.status, r.score) == ("scored", 1.0), r
    # a fresh reset brings back an empty profile
    env.reset(CHROME_BOOKMARK)
    assert env.evaluate().score == 0.0


def test_history_task_with_generated_history_db_and_postconfig_restart(env):
    task = OSWORLD / "chrome/44ee5668-ecd5-4366-a6ce-c1c9b8d4e938.json"
    obs = env.reset(task)
    assert "skipped" not in obs.extra and "setup_error" not in obs.extra, obs.extra
    assert env.controller.wait_for_window(["Chromium"], timeout=20)
    r = env.evaluate()  # postconfig: pkill chrome, relaunch; then read History
    assert (r.status, r.score) == ("scored", 0.0), r
    assert "youtube.com/watch" in r.details["metrics"][0]["result"]  # chromium kept the generated rows
    # solve it the terminal way: stop the browser, delete the YouTube rows
    env.controller.run(["pkill", "chrome"])
    delete = ("import sqlite3, os; c = sqlite3.connect(os.path.expanduser('~/.config/google-chrome/Default/History'));"
              " c.execute(\"DELETE FROM urls WHERE url LIKE '%youtube%'\"); c.commit()")
    assert env.controller.run(["python", "-c", delete]).returncode == 0
    r = env.evaluate()
    assert (r.status, r.score) == ("scored", 1.0), r
    assert "bbc.co.uk" in r.details["metrics"][0]["result"]


def test_pkill_shim_only_touches_this_environment(env):
    env.reset(CHROME_BING)
    assert env.controller.wait_for_window(["Chromium"], timeout=20)
    outsider = subprocess.Popen(["sleep", "30"])  # not ours: must survive `pkill sleep`
    try:
        env.controller.launch(["sleep", "30"])
        assert env.controller.run(["pkill", "sleep"]).returncode == 0
        assert outsider.poll() is None
        assert "sleep" not in _comms(env)
        # tasks kill `chrome`; Debian's process is `chromium`
        assert env.controller.run(["pkill", "chrome"]).returncode == 0
        assert not [c for c in _comms(env) if "chrom" in c]
        # the session is spared: `pkill python` does not take the sandbox's server, nor `pkill -f Xvfb` the display
        assert env.controller.run(["pkill", "python"]).returncode == 1
        assert env.controller.run(["pkill", "-f", "Xvfb"]).returncode == 1
        assert env.controller.run(["echo", "still here"]).output == "still here\n"
        deadline = time.time() + 5  # the window manager drops the window a moment later
        while any("Chromium" in t for t in env.controller.window_titles()) and time.time() < deadline:
            time.sleep(0.1)
        assert not any("Chromium" in t for t in env.controller.window_titles())
    finally:
        outsider.kill()
        outsider.wait()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    for name in ("a", "b", "c"):
        (root / f"{name}.html").write_text(f"<html><head><title>Page {name}</title></head><body>{name}</body></html>")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_chrome_open_and_close_tabs_then_reopen_scores_one(env, site):
    a, b, c = (f"{site}/{n}.html" for n in "abc")
    launch = [{"type": "launch", "parameters": {"command": ["google-chrome", "--remote-debugging-port=1337"]}},
              {"type": "launch", "parameters": {"command": ["socat", "tcp-listen:9222,fork", "tcp:localhost:1337"]}}]
    task = {"id": "reopen-tab", "instruction": "Bring back the last tab I closed.", "snapshot": "chrome",
            "related_apps": ["chrome"],
            "config": launch + [{"type": "chrome_open_tabs", "parameters": {"urls_to_open": [a, b, c]}},
                                {"type": "chrome_close_tabs", "parameters": {"urls_to_close": [c]}}],
            "evaluator": {"func": ["is_expected_tabs", "is_expected_active_tab"],
                          "result": [{"type": "open_tabs_info"}, {"type": "active_tab_info", "goto_prefix": "http://"}],
                          "expected": [{"type": "rule", "rules": {"type": "url", "urls": [a, b, c]}},
                                       {"type": "rule", "rules": {"type": "url", "url": c}}]}}
    obs = env.reset(task)
    assert "skipped" not in obs.extra and "setup_error" not in obs.extra, obs.extra
    r = env.evaluate()
    assert (r.status, r.score) == ("scored", 0.0)
    tabs = eval(r.details["metrics"][0]["result"])  # noqa: S307 - our own repr of a list of dicts
    assert sorted(t["url"] for t in tabs) == [a, b]  # the first blank tab closed, c closed by the step
    env.controller.run(["python", "-c", "import pyautogui; pyautogui.hotkey('ctrl', 'shift', 't')"])
    deadline = time.time() + 10
    while (r := env.evaluate()).score != 1.0 and time.time() < deadline:
        time.sleep(0.5)
    assert (r.status, r.score) == ("scored", 1.0), r
    # the active tab follows the user: switch to the first tab
    env.controller.run(["python", "-c", "import pyautogui; pyautogui.hotkey('ctrl', '1')"])
    deadline = time.time() + 10
    while (url := G.GETTERS["active_url_from_accessTree"](env.controller, {"goto_prefix": "http://"})) != a \
            and time.time() < deadline:
        time.sleep(0.3)
    assert url == a
    assert G.GETTERS["active_tab_info"](env.controller, {"goto_prefix": "http://"})["title"] == "Page a"


def test_open_and_close_window_steps(env):
    task = {"id": "windows", "instruction": "x",
            "config": [{"type": "open", "parameters": {"path": "xterm"}}],  # a command: started, window awaited
            "evaluator": {"func": "infeasible",
                          "postconfig": [{"type": "close_window", "parameters": {"window_name": "xterm"}},
                                         {"type": "sleep", "parameters": {"seconds": 1}}]}}
    obs = env.reset(task)
    assert "setup_error" not in obs.extra, obs.extra
    assert "xterm" in env.controller.window_titles()
    env.evaluate()
    assert "xterm" not in env.controller.window_titles()


def test_skipped_tasks_say_why(env):
    obs = env.reset(OSWORLD / "os/23393935-50c7-4a86-aeea-2b78fd089c5c.json")
    assert obs.extra["skipped"].startswith("download not available offline: https://drive.usercontent.google.com/")
    r = env.evaluate()
    assert r.status == "skipped" and r.reason == obs.extra["skipped"]
    obs = env.reset(OSWORLD / "os/5ced85fc-fa1a-4217-95fd-0fb530545ce2.json")  # eval.sh is on Google Drive
    assert obs.extra["skipped"].startswith("download not available offline")
    assert env.evaluate().status == "skipped"
    obs = env.reset(OSWORLD / "chrome/06fe7178-4491-4589-810f-2e2bc9502122.json")  # live travel sites
    assert obs.extra["skipped"] == "needs the internet: chrome_open_tabs opens https://www.lonelyplanet.com"


def test_missing_app_is_skipped_not_a_crash(env):
    task = {"id": "no-app", "instruction": "x", "snapshot": "os", "related_apps": ["os"],
            "config": [{"type": "launch", "parameters": {"command": ["qvl-no-such-app", "/home/user/a.png"]}}],
            "evaluator": {"func": "infeasible"}}
    obs = env.reset(task)
    assert obs.extra["skipped"] == "missing app: qvl-no-such-app"


def test_close_leaves_no_processes(template):
    e = DesktopEnvironment(home_template=template, settle_s=0)
    e.reset(CHROME_BING)
    e.controller.run("nohup sleep 300 >/dev/null 2>&1 & setsid sleep 300 >/dev/null 2>&1 &", shell=True)
    assert e.controller.wait_for_window(["Chromium"], timeout=20)
    ns, root, display = _pid_namespace(e), e.root, e.display
    assert len(_in_namespace(ns)) >= 8  # init, server, Xvfb, bus, openbox, chromium and its helpers, 2 sleeps
    e.close()
    assert _in_namespace(ns) == []
    assert not root.exists()
    # the display number is free again: lock file and socket gone (another server may own it since)
    lock = Path(f"/tmp/.X{display[1:]}-lock")
    assert not lock.exists() or int(lock.read_text().strip() or 0) != os.getpid()


def test_two_environments_side_by_side(template):
    a = DesktopEnvironment(settle_s=0)
    b = DesktopEnvironment(settle_s=0)
    try:
        assert a.display != b.display and a.home != b.home
        assert a.controller.chrome_port != b.controller.chrome_port
        a.reset(OS_MOVE)
        b.reset(OS_MOVE)
        a.controller.run("mv ~/Desktop/todo.txt ~/Desktop/done/", shell=True)
        assert (a.evaluate().score, b.evaluate().score) == (1.0, 0.0)
    finally:
        a.close()
        b.close()


def test_user_home_is_never_wiped(tmp_path):
    (tmp_path / "precious.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a qvl sandbox home"):
        DesktopEnvironment(home=tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep"


# pyautogui binds to one display per process, so episodes that act through DesktopExecutor run
# in their own interpreter (the suite's other tests may already have bound it to another display).
EPISODES = textwrap.dedent("""
    import json, sys
    from agent.actions import Action
    from environments.desktop import DesktopEnvironment

    def run(env, path, actions):
        env.reset(path)
        for a in actions:
            env.step(Action(**a))
        r = env.evaluate()
        return [r.status, r.score]

    terminal = [{"action": "key", "keys": ["ctrl", "alt", "t"]}, {"action": "wait", "time": 1}]
    def typed(text):
        return terminal + [{"action": "type", "text": text + "\\n"}, {"action": "wait", "time": 1},
                           {"action": "terminate", "status": "success"}]
    move, rename, infeasible, terminal_setup = sys.argv[1:5]
    # OSWorld's "show the result on the terminal" shape, with the config of a real task (ctrl+alt+t, activate)
    show = {"id": "terminal-output", "instruction": "Print 40+14 on the terminal.",
            "config": json.load(open(terminal_setup))["config"],
            "evaluator": {"func": "check_include_exclude", "result": {"type": "vm_terminal_output"},
                          "expected": {"type": "rule", "rules": {"include": ["54\\n"], "exclude": ["error"]}}}}
    out = {}
    with DesktopEnvironment(settle_s=0.2, step_pause_s=0.2) as env:
        out["move_nothing"] = run(env, move, [])
        out["move_solved"] = run(env, move, typed("mv ~/Desktop/todo.txt ~/Desktop/done/"))
        out["move_fail"] = run(env, move, [{"action": "terminate", "status": "failure"}])
        out["rename_solved"] = run(env, rename, typed("mv ~/Desktop/todo_list_Jan_1 ~/Desktop/todo_list_Jan_2"))
        out["rename_nothing"] = run(env, rename, [{"action": "terminate", "status": "success"}])
        out["infeasible_fail"] = run(env, infeasible, [{"action": "terminate", "status": "failure"}])
        out["infeasible_done"] = run(env, infeasible, [{"action": "terminate", "status": "success"}])
        out["terminal_solved"] = run(env, show, [{"action": "type", "text": "echo $((40+14))\\n"},
                                                 {"action": "wait", "time": 1}])
        out["terminal_nothing"] = run(env, show, [])
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_real_os_tasks_scripted_through_env_step():
    p = subprocess.run([sys.executable, "-c", EPISODES, str(OS_MOVE), str(OS_RENAME), str(OS_INFEASIBLE),
                        str(OSWORLD / "os/5ced85fc-fa1a-4217-95fd-0fb530545ce2.json")],
                       cwd=REPO, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out == {
        "move_nothing": ["scored", 0.0], "move_solved": ["scored", 1.0], "move_fail": ["scored", 0.0],
        "rename_solved": ["scored", 1.0], "rename_nothing": ["scored", 0.0],
        "infeasible_fail": ["scored", 1.0], "infeasible_done": ["scored", 0.0],
        "terminal_solved": ["scored", 1.0], "terminal_nothing": ["scored", 0.0],
    }


# The `type` action must give exactly the text in every app: LibreOffice takes a key released and pressed
# again at once for auto-repeat and drops it ("Sheet2" -> "Shet2" with pyautogui.write), and pyautogui's
# own key table types "<" as ">". Each app gets the same lines; what arrived is read back from the app.
TYPING = textwrap.dedent("""
    import json, sys, time
    from agent.actions import Action
    from environments.desktop import DesktopEnvironment

    lines = json.loads(sys.argv[1])
    out = {}
    with DesktopEnvironment(settle_s=0, step_pause_s=0.1) as env:
        c = env.controller
        apps = {
            "writer": (["libreoffice", "--writer"], "LibreOffice Writer"),
            "terminal": (["qvl-terminal", "-e", "sh", "-c", "stty -echo; cat > ~/typed.txt"], "Terminal"),
            "chromium": (["google-chrome", "data:text/html,<textarea autofocus cols=100 rows=30></textarea>"],
                         "Chromium"),
        }
        for app, (command, title) in apps.items():
            env.reset()
            c.launch(command)
            assert c.wait_for_window([title], 120), app
            time.sleep(3)
            env.step(Action(action="type", text="\\n".join(lines) + "\\n"))
            time.sleep(1)
            if app == "terminal":
                out[app] = (env.home / "typed.txt").read_text()
            else:
                env.step(Action(action="key", keys=["ctrl", "a"]))
                env.step(Action(action="key", keys=["ctrl", "c"]))
                time.sleep(0.5)
                out[app] = c.run(["xclip", "-o", "-selection", "clipboard"]).output
    print(json.dumps(out))
""")
TYPED_LINES = ["Sheet2", "aabbccddee", "Mississippi 1100 bookkeeper", "Hello, World! (x+y)*2 = 100%",
               "committee ~`<>?|", "AABB aabb 0011", "http://localhost:8080/a?b=c&d=e", "tt oo ll ss ee",
               "Total: 3,300.00", "~/Documents/llama.txt", "e = mc**2; x == y", "café naïve – 日本語"]


@pytest.mark.slow
def test_type_is_exact_in_libreoffice_the_terminal_and_chromium():
    p = subprocess.run([sys.executable, "-c", TYPING, json.dumps(TYPED_LINES)], cwd=REPO, capture_output=True,
                       text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    for app, text in got.items():
        assert text.replace("\r", "").split("\n")[:len(TYPED_LINES)] == TYPED_LINES, app
