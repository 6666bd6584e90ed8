"""OSWorld setup steps (`config` and `evaluator.postconfig`), run against a `Controller`.

Each step type is one function in `STEPS` (name → fn(controller, **parameters)). Semantics follow
OSWorld's `SetupController` (see docs/osworld.md §1.2): placeholders in execute/command, a 120 s
command timeout whose return code is not checked, `until` re-runs, relative paths against the home.

Steps that cannot be done offline raise `TaskSkipped` with the reason (Google Drive, login, files
that are neither mirrored nor local); an unknown step type is `unsupported`. `offline_blocker`
finds those reasons before anything is started, so a harness can skip without a reset.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

from environments.controller import Controller
from environments.sandbox import absolute
from environments.tasks import SetupStep, Task, truthy
from tools.browser import CHROMIUM, CHROMIUM_ARGS
CDP_CONNECT_TRIES = 30  # OSWorld: 15 tries, 5 s apart; a local chromium is up within seconds
OPEN_WINDOW_TIMEOUT_S = 120  # OSWorld waits up to 1800 s for the opened file's window
UNTIL_MAX_FAILURES = 5
CHROME_TRANSITION_TYPED = 805306368  # what OSWorld writes into visits.transition
CHROME_EPOCH_OFFSET_S = 11644473600  # 1601-01-01 → 1970-01-01


class TaskSkipped(Exception):
    """The task cannot run here; `reason` says why (reported, never scored)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SetupError(RuntimeError):
    """A setup step failed (OSWorld aborts setup on any step exception)."""


# Executables each OSWorld app family needs (any one of the alternatives).
APP_BINARIES: dict[str, tuple[str, ...]] = {
    "chrome": ("chromium", "google-chrome"),
    "libreoffice_calc": ("libreoffice", "soffice"),
    "libreoffice_writer": ("libreoffice", "soffice"),
    "libreoffice_impress": ("libreoffice", "soffice"),
    "calc": ("libreoffice", "soffice"),
    "writer": ("libreoffice", "soffice"),
    "impress": ("libreoffice", "soffice"),
    "gimp": ("gimp",),
    "vlc": ("vlc",),
    "thunderbird": ("thunderbird",),
    "vs_code": ("code",),
    "vscode": ("code",),
}


# ---- placeholders ----------------------------------------------------------------------------
def placeholders(controller: Controller) -> dict[str, str]:
    w, h = controller.screen_size
    return {
        "{CLIENT_PASSWORD}": controller.client_password,
        "{SCREEN_WIDTH}": str(w),
        "{SCREEN_HEIGHT}": str(h),
        "{SCREEN_WIDTH_HALF}": str(w // 2),
        "{SCREEN_HEIGHT_HALF}": str(h // 2),
    }


def substitute(command: str | list[str], controller: Controller) -> str | list[str]:
    """OSWorld's execute/command placeholder replacement (plain string replace, no format())."""
    table = placeholders(controller)

    def one(s: str) -> str:
        for k, v in table.items():
            s = s.replace(k, v)
        return s

    return one(command) if isinstance(command, str) else [one(str(c)) for c in command]


# ---- steps -----------------------------------------------------------------------------------
def step_execute(c: Controller, command: str | list[str], shell: Any = False, stdout: str = "",
                 stderr: str = "", until: dict | None = None) -> None:
    command = substitute(command, c)
    shell = truthy(shell)
    failures = 0
    while True:
        result = c.run(command, shell=shell)
        if stdout:
            (c.task_cache / stdout).write_text(result.output)
        if stderr:
            (c.task_cache / stderr).write_text(result.error)
        if not until and result.returncode != 0:  # OSWorld goes on; the report shows it
            c.failed_commands.append({"command": command, "returncode": result.returncode,
                                      "error": result.error[-2000:]})
        if not until or _until_met(until, result):
            return
        failures += 1
        if failures > UNTIL_MAX_FAILURES:
            return
        time.sleep(0.3)


def _until_met(until: dict, result) -> bool:
    """OSWorld stops re-running as soon as any one of the given conditions holds."""
    return (("returncode" in until and result.returncode == until["returncode"])
            or ("stdout" in until and until["stdout"] in result.output)
            or ("stderr" in until and until["stderr"] in result.error))


def step_launch(c: Controller, command: str | list[str], shell: Any = False) -> None:
    shell = truthy(shell)
    if not shell:
        exe = command.split()[0] if isinstance(command, str) else command[0]
        if c.which(exe) is None:
            raise TaskSkipped(f"missing app: {exe}")
    c.launch(command, shell=shell)


def step_sleep(c: Controller, seconds: float) -> None:
    time.sleep(float(seconds))


def step_open(c: Controller, path: str) -> None:
    target = Path(absolute(path))
    try:
        exists = c.host_path(target).exists()
    except FileNotFoundError:
        exists = False
    if exists:
        c.launch(["xdg-open", str(target)])
    elif c.which(path):
        c.launch([path])
    else:
        raise SetupError(f"open: {path} is neither a file nor a command")
    names = [target.name, target.stem]
    if c.wait_for_window(names, OPEN_WINDOW_TIMEOUT_S) is None:
        raise SetupError(f"open: no window titled like {target.name!r} within {OPEN_WINDOW_TIMEOUT_S} s")
    c.activate_window(target.stem)


def step_download(c: Controller, files: list[dict]) -> None:
    for f in files:
        c.put_file(f["path"], fetch(f["url"], c, dest=f["path"]))


def step_upload_file(c: Controller, files: list[dict]) -> None:
    for f in files:
        src = Path(f["local_path"])
        if not src.is_file():
            raise TaskSkipped(f"upload_file: local file {src} is missing")
        c.put_file(f["path"], src.read_bytes())


def step_activate_window(c: Controller, window_name: str, strict: Any = False, by_class: Any = False) -> None:
    c.activate_window(window_name, truthy(strict), truthy(by_class))


def step_close_window(c: Controller, window_name: str, strict: Any = False, by_class: Any = False) -> None:
    c.close_window(window_name, truthy(strict), truthy(by_class))


def step_chrome_open_tabs(c: Controller, urls_to_open: list[str]) -> None:
    with cdp_browser(c) as browser:
        context = browser.contexts[0]
        for i, url in enumerate(urls_to_open):
            page = context.new_page()
            try:
                page.goto(url, timeout=60_000)
            except Exception:  # OSWorld ignores load failures; the tab stays open
                pass
            if i == 0 and len(context.pages) > 1:
                context.pages[0].close()


def step_chrome_close_tabs(c: Controller, urls_to_close: list[str]) -> None:
    from environments.metrics import compare_urls

    time.sleep(1)  # OSWorld sleeps 5 s so the tabs opened just before have settled
    with cdp_browser(c) as browser:
        context = browser.contexts[0]
        for url in urls_to_close:
            for page in context.pages:
                if compare_urls(page.url, url):
                    page.close()
                    break


def step_update_browse_history(c: Controller, history: list[dict]) -> None:
    db = c.host_path("~/.config/google-chrome/Default/History", write=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(history_template())
    now_us = int((time.time() + CHROME_EPOCH_OFFSET_S) * 1_000_000)
    con = sqlite3.connect(db)
    try:
        for item in history:
            t = now_us - int(float(item["visit_time_from_now_in_seconds"]) * 1_000_000)
            cur = con.execute(
                "INSERT INTO urls (url, title, visit_count, typed_count, last_visit_time, hidden) "
                "VALUES (?, ?, 1, 0, ?, 0)", (item["url"], item["title"], t))
            con.execute(
                "INSERT INTO visits (url, visit_time, from_visit, transition, segment_id, visit_duration) "
                "VALUES (?, ?, 0, ?, 0, 0)", (cur.lastrowid, t, CHROME_TRANSITION_TYPED))
        con.commit()
    finally:
        con.close()


@functools.lru_cache(maxsize=1)
def history_template() -> bytes:
    """An empty Chrome `History` database with the installed chromium's schema.

    OSWorld downloads a template; here chromium creates one in a throwaway profile, once per
    process, so the schema always matches the browser that will open it.
    """
    with tempfile.TemporaryDirectory(prefix="qvl-chrome-template-") as profile:
        subprocess.run(
            [CHROMIUM, "--headless=new", *CHROMIUM_ARGS, f"--user-data-dir={profile}", "--dump-dom", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        made = Path(profile) / "Default" / "History"
        if not made.is_file():
            raise SetupError("chromium did not create a History database for the template")
        con = sqlite3.connect(made)
        con.execute("DELETE FROM urls")
        con.execute("DELETE FROM visits")
        con.commit()
        con.close()
        return made.read_bytes()


def step_needs_account(c: Controller, **_: Any) -> None:
    raise TaskSkipped("needs a Google account (googledrive/login steps cannot run offline)")


STEPS: dict[str, Callable[..., None]] = {
    "execute": step_execute,
    "command": step_execute,
    "launch": step_launch,
    "sleep": step_sleep,
    "open": step_open,
    "download": step_download,
    "upload_file": step_upload_file,
    "activate_window": step_activate_window,
    "close_window": step_close_window,
    "chrome_open_tabs": step_chrome_open_tabs,
    "chrome_close_tabs": step_chrome_close_tabs,
    "update_browse_history": step_update_browse_history,
    "googledrive": step_needs_account,
    "login": step_needs_account,
}
ACCOUNT_STEPS = {"googledrive", "login"}


def run_steps(steps: list[SetupStep], controller: Controller, *, phase: str = "config",
              on_step: Callable[[int, SetupStep], None] | None = None) -> None:
    """Run steps in order. TaskSkipped propagates; any other failure becomes SetupError naming the step."""
    for i, step in enumerate(steps):
        fn = STEPS.get(step.type)
        if fn is None:
            raise TaskSkipped(f"unsupported: setup step {step.type!r}")
        if on_step is not None:
            on_step(i, step)
        try:
            fn(controller, **step.parameters)
        except (TaskSkipped, SetupError):
            raise
        except TypeError as e:
            raise SetupError(f"{phase}[{i}] {step.type}: bad parameters ({e})") from e
        except Exception as e:
            raise SetupError(f"{phase}[{i}] {step.type}: {type(e).__name__}: {e}") from e


# ---- offline files ---------------------------------------------------------------------------
def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mirror_candidates(url: str, mirror: Path, task_id: str, dest: str) -> list[Path]:
    """Where a mirror folder may hold `url`, in lookup order:

    1. `index.json` in the mirror: `{url: relative path}`;
    2. Hugging Face dataset URLs (OSWorld's file cache): the path after `/resolve/main/`;
    3. an OSWorld `cache/` folder: `<task id>/<uuid5(NAMESPACE_URL, url)>_<basename(dest)>`.
    """
    out = []
    index = mirror / "index.json"
    if index.is_file():
        rel = json.loads(index.read_text()).get(url)
        if rel:
            out.append(mirror / rel)
    path = urlparse(url).path
    if "/resolve/main/" in path:
        out.append(mirror / unquote(path.split("/resolve/main/", 1)[1]))
    out.append(mirror / task_id / f"{uuid.uuid5(uuid.NAMESPACE_URL, url)}_{Path(dest).name}")
    return out


def locate(url: str, controller: Controller, dest: str = "") -> Path | str | None:
    """A local Path for `url` (file:// or the mirror), the URL itself if it may be fetched
    (loopback, or any http(s) URL when the controller is online), or None."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        p = Path(unquote(parsed.path))
        return p if p.is_file() else None
    if parsed.scheme in ("http", "https") and _is_loopback(parsed.hostname):
        return url
    if controller.mirror is not None:
        for p in mirror_candidates(url, controller.mirror, controller.task_id, dest or parsed.path):
            if p.is_file():
                return p
    if controller.online and parsed.scheme in ("http", "https"):
        return url
    return None


def is_local_url(url: str) -> bool:
    """A URL a browser can load without the internet."""
    parsed = urlparse(url if "://" in url else "http://" + url)
    return parsed.scheme in ("file", "chrome", "about", "data") or _is_loopback(parsed.hostname)


def fetch(url: str, controller: Controller, dest: str = "") -> bytes:
    """The bytes behind `url`, offline; TaskSkipped when it cannot be had without the internet."""
    where = locate(url, controller, dest)
    if where is None:
        raise TaskSkipped(f"download not available offline: {url} "
                          f"(add it to a mirror folder, see environments.setup.mirror_candidates)")
    if isinstance(where, Path):
        return where.read_bytes()
    import httpx

    r = httpx.get(where, timeout=60, follow_redirects=True)
    r.raise_for_status()
    return r.content


# Commands that need root in OSWorld's VM, where `sudo` is real. The sandbox's user has no privileges
# (its sudo runs commands as the user), so a task built on them cannot be set up or checked here.
# Package installs are not among them: the apt shims answer those from what is installed.
NEEDS_ROOT = re.compile(
    r"\b(useradd|adduser|userdel|deluser|usermod|groupadd|chsh|chpasswd|visudo|loginctl|systemctl"
    r"|timedatectl|hostnamectl|localectl|reboot|shutdown|poweroff|mount|umount|modprobe|update-alternatives)\b")


def _commands(task: Task) -> list[str]:
    """Every command string a task's steps and command getters would run."""
    out = []
    specs = [s.parameters for s in list(task.config) + list(task.evaluator.postconfig)
             if s.type in ("execute", "command", "launch")]
    for _, result, expected, _ in task.evaluator.metrics() if task.evaluator.func not in ("", []) else []:
        specs += [g.options for g in (result, expected) if g is not None and g.type.startswith("vm_command")]
    for spec in specs:
        cmd = spec.get("command")
        out.append(cmd if isinstance(cmd, str) else " ".join(map(str, cmd or [])))
    return out


def needs_root(task: Task) -> str | None:
    """The first command of `task` that needs root in a VM (see NEEDS_ROOT), or None."""
    for cmd in _commands(task):
        m = NEEDS_ROOT.search(cmd)
        if m:
            return m.group(0)
    return None


def offline_blocker(task: Task, controller: Controller) -> str | None:
    """Why `task` cannot run here, checked before anything starts; None if nothing blocks it."""
    if task.proxy:
        return "needs the internet: proxy=true task (live site behind a residential proxy)"
    if command := needs_root(task):
        return f"unsupported: the task runs {command!r}, which needs root in OSWorld's VM; the sandbox's user has none"
    steps = list(task.config) + list(task.evaluator.postconfig)
    for step in steps:
        if step.type in ACCOUNT_STEPS:
            return f"needs a Google account: {step.type} step"
        if step.type not in STEPS:
            return f"unsupported: setup step {step.type!r}"
    if not controller.online:
        for step in steps:
            urls = step.parameters.get("urls_to_open", []) if step.type == "chrome_open_tabs" else []
            for url in urls:
                if not is_local_url(url):
                    return f"needs the internet: chrome_open_tabs opens {url}"
    for step in steps:
        if step.type == "download":
            for f in step.parameters.get("files", []):
                if locate(f["url"], controller, f.get("path", "")) is None:
                    return f"download not available offline: {f['url']}"
    apps = {task.snapshot, *task.related_apps}
    for app in sorted(a for a in apps if a in APP_BINARIES):
        if not any(controller.which(b) for b in APP_BINARIES[app]):
            return f"missing app: {app} (needs one of {', '.join(APP_BINARIES[app])})"
    for step in steps:
        if step.type == "launch" and not truthy(step.parameters.get("shell", False)):
            cmd = step.parameters.get("command")
            exe = cmd.split()[0] if isinstance(cmd, str) else (cmd or [""])[0]
            if exe and controller.which(exe) is None:
                return f"missing app: {exe}"
    return None


class cdp_browser:
    """`with cdp_browser(controller) as browser:` Playwright connected over CDP to the managed chromium.

    The connection goes through the thread's shared Playwright driver (`tools.browser.shared_playwright`),
    so it works beside a BrowserExecutor running in the same thread.
    """

    def __init__(self, controller: Controller, tries: int = CDP_CONNECT_TRIES) -> None:
        self.controller = controller
        self.tries = tries

    def __enter__(self):
        from tools.browser import shared_playwright

        playwright = shared_playwright.acquire()
        endpoint = f"http://127.0.0.1:{self.controller.chrome_port}"
        last, self._browser = None, None
        try:
            for _ in range(self.tries):
                try:
                    self._browser = playwright.chromium.connect_over_cdp(endpoint, timeout=10_000)
                    return self._browser
                except Exception as e:  # chromium not listening yet
                    last = e
                    time.sleep(1)
        finally:
            if self._browser is None:  # __exit__ will not run: give the driver back here
                shared_playwright.release()
        raise SetupError(f"no chromium DevTools endpoint at {endpoint} ({last})")

    def __exit__(self, *exc) -> None:
        from tools.browser import shared_playwright

        try:
            self._browser.close()  # disconnects; the browser keeps running
        finally:
            shared_playwright.release()
