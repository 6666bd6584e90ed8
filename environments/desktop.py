"""A local Linux desktop that runs OSWorld task files unmodified, without a VM.

One `DesktopEnvironment` is one sandboxed session:

- display: a private `Xvfb` (1920x1080 by default, a free display number chosen by Xvfb itself via
  `-displayfd`, so several environments run side by side) with openbox as the EWMH window manager
  (wmctrl works). A private openbox rc.xml binds ctrl+alt+t to an xterm titled "Terminal". Passing
  `display=":0"` drives that live desktop instead (no Xvfb/openbox started, no ctrl+alt+t binding).
- home: OSWorld tasks hard-code `/home/user`. Every task runs with HOME set to a sandbox home that is
  restored from a template on every reset, and `/home/user` in step/getter parameters and commands is
  rewritten to it (environments.controller). The real user's files are never touched.
- shims, first on PATH: `python` (this interpreter, which has pyautogui), `google-chrome` (Debian
  chromium with the profile in `~/.config/google-chrome` and DevTools on a per-environment port),
  `socat` (a no-op: CDP is reached on that port directly), `sudo` (runs the command unprivileged,
  reading the `-S` password line), `pkill` (only signals this environment's processes; `chrome`
  also matches `chromium`), `gnome-terminal` (the xterm "Terminal").
- close() kills every process the environment started, found by a marker in their environment.

Tasks are OSWorld `Task`s (environments.tasks), a dict, or a path to a task file. A task that
cannot run here is *skipped*, with the reason in `obs.extra["skipped"]` and in `evaluate()`; a setup
step that fails leaves `obs.extra["setup_error"]` and `evaluate()` reports status "error". Files that
tasks download come from `mirror` (see environments.setup.mirror_candidates), file:// or loopback
URLs; with `online=True` other URLs may be fetched and opened too (default: offline, those tasks skip).
Without a VM, commands that change the machine itself (apt-get install, useradd, timedatectl, ...)
would reach the host: such tasks are skipped unless `allow_host_changes=True` (e.g. in a throwaway
container). The agent's own actions are not filtered: run untrusted agents in a container.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agent.actions import Action, ActionOutcome
from environments.base import EvalResult, Observation
from environments.controller import CHROME_PORT_VAR, MARKER_VAR, Controller
from environments.evaluate import as_task, evaluate_environment, observation_extra, start_task
from environments.tasks import Task
from tools.browser import CHROMIUM, CHROMIUM_ARGS

SANDBOX_MARK = ".qvl-sandbox-home"  # a home dir we may wipe carries this file
_SANDBOX_NOTE = "sandbox home of a qvl-agent DesktopEnvironment; wiped and restored on every reset\n"
HOME_SKELETON = ("Desktop", "Documents", "Downloads", "Music", "Pictures", "Videos", ".config")
CHROMIUM_FLAGS = " ".join((*CHROMIUM_ARGS, "--no-default-browser-check", "--password-store=basic"))

_OPENBOX_RC = """<?xml version="1.0" encoding="UTF-8"?>
<openbox_config xmlns="http://openbox.org/3.4/rc">
  <focus><focusNew>yes</focusNew></focus>
  <desktops><number>1</number></desktops>
  <keyboard>
    <keybind key="C-A-t"><action name="Execute"><command>qvl-terminal</command></action></keybind>
  </keyboard>
</openbox_config>
"""

_SHIMS = {
    "python": """#!/bin/sh
exec "{python}" "$@"
""",
    "google-chrome": """#!/bin/bash
# OSWorld starts `google-chrome --remote-debugging-port=1337`; the port is this environment's own.
args=()
for a in "$@"; do
  case "$a" in
    --remote-debugging-port=*) ;;
    *) args+=("$a") ;;
  esac
done
exec "{chromium}" --user-data-dir="$HOME/.config/google-chrome" --remote-debugging-port="${port_var}" \\
  {flags} "${{args[@]}}"
""",
    "socat": """#!/bin/sh
# OSWorld relays 9222 -> 1337 for CDP; here CDP is reached on the environment's port directly.
exit 0
""",
    "sudo": """#!/bin/bash
# Sandbox sudo: never gains privileges; reads the -S password line like sudo does.
read_pw=0
while [ $# -gt 0 ]; do
  case "$1" in
    -S) read_pw=1; shift ;;
    -u|-g|-p|-C|-U|-r|-t|-D) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
if [ $read_pw = 1 ]; then read -r _ || true; fi
[ $# -eq 0 ] && exit 0
exec "$@"
""",
    "pkill": """#!{python}
# Sandbox pkill: only signals processes of this environment (marker in their environment).
import os, re, signal, sys, time
marker = ("{marker_var}=" + os.environ.get("{marker_var}", "")).encode()
sig, full, exact, pattern = signal.SIGTERM, False, False, None
args = sys.argv[1:]
while args:
    a = args.pop(0)
    if a == "-f": full = True
    elif a == "-x": exact = True
    elif a in ("-s", "--signal"): sig = getattr(signal, "SIG" + args.pop(0).upper().removeprefix("SIG"))
    elif a.startswith("-") and len(a) > 1 and (a[1:].isdigit() or a[1:].isupper()):
        sig = int(a[1:]) if a[1:].isdigit() else getattr(signal, "SIG" + a[1:].removeprefix("SIG"))
    elif a.startswith("-"): pass
    else: pattern = a
if pattern is None:
    sys.exit(2)
rx = re.compile(("^(?:%s)$" if exact else "%s") % pattern)
hits = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        if marker not in open(f"/proc/{{pid}}/environ", "rb").read().split(b"\\0"):
            continue
        name = open(f"/proc/{{pid}}/comm").read().strip()
        if full:
            name = open(f"/proc/{{pid}}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace").strip()
    except OSError:
        continue
    # Debian's browser is `chromium`; tasks kill `chrome`.
    if rx.search(name) or rx.search(name.replace("chromium", "chrome")):
        hits.append(int(pid))
matched = bool(hits)
for pid in hits:
    try: os.kill(pid, sig)
    except OSError: pass
# Wait for them to go, so a relaunch right after does not attach to the dying instance.
deadline = time.time() + 10
while hits and time.time() < deadline:
    hits = [p for p in hits if os.path.exists(f"/proc/{{p}}") and
            open(f"/proc/{{p}}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    time.sleep(0.05)
sys.exit(0 if matched else 1)
""",
    "qvl-terminal": """#!/bin/sh
# The log (xterm -l) is what the vm_terminal_output getter reads; $$ becomes xterm's pid.
cd "$HOME"
exec xterm -T Terminal -xrm 'XTerm*allowTitleOps: false' -fa Monospace -fs 11 \\
  -l -lf "$XDG_RUNTIME_DIR/terminal-$$.log" "$@"
""",
    "gnome-terminal": """#!/bin/sh
exec qvl-terminal "$@"
""",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DesktopEnvironment:
    """`environments.base.Environment` on a sandboxed X desktop; see the module docstring."""

    def __init__(self, display: str | None = None, size: tuple[int, int] = (1920, 1080),
                 home: Path | None = None, *, home_template: Path | None = None, mirror: Path | None = None,
                 client_password: str = "password", settle_s: float = 1.0, step_pause_s: float = 0.5,
                 online: bool = False, allow_host_changes: bool = False) -> None:
        self.size = tuple(size)
        self.settle_s = settle_s
        self.step_pause_s = step_pause_s
        self.home_template = Path(home_template) if home_template is not None else None
        if self.home_template is not None and not self.home_template.is_dir():
            raise FileNotFoundError(f"home template folder not found: {self.home_template}")
        if mirror is not None and not Path(mirror).is_dir():
            raise FileNotFoundError(f"download mirror folder not found: {mirror}")
        if home is not None:
            _check_sandbox_home(Path(home))
        self.root = Path(tempfile.mkdtemp(prefix="qvl-desktop-"))
        self.home = Path(home) if home is not None else self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / SANDBOX_MARK).write_text(_SANDBOX_NOTE)
        self.marker = uuid.uuid4().hex
        self._session_pids: list[int] = []
        self._executor = None
        self.task: Task | None = None
        self.skip_reason: str | None = None
        self.setup_error: str | None = None
        self.action_history: list[Any] = []
        self._closed = False
        try:
            self.bin = self._write_shims()
            self.display = display if display is not None else self._start_display()
            if display is not None:
                self.size = _screen_size(display)
            self.controller = Controller(
                env=self._task_env(), home=self.home, cache_dir=self.root / "cache", display=self.display,
                screen_size=self.size, marker=self.marker, chrome_port=_free_port(),
                client_password=client_password, mirror=Path(mirror) if mirror is not None else None,
                online=online, allow_host_changes=allow_host_changes)
            self.controller.env[CHROME_PORT_VAR] = str(self.controller.chrome_port)
            self._restore_home()
        except BaseException:
            self.close()
            raise

    # ---- session ---------------------------------------------------------------------------
    def _write_shims(self) -> Path:
        bin_dir = self.root / "bin"
        bin_dir.mkdir(parents=True)
        values = {"python": sys.executable, "chromium": CHROMIUM, "port_var": CHROME_PORT_VAR,
                  "marker_var": MARKER_VAR, "flags": CHROMIUM_FLAGS}
        for name, text in _SHIMS.items():
            p = bin_dir / name
            p.write_text(text.format(**values))
            p.chmod(0o755)
        return bin_dir

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("XDG_", "DBUS_", "QVL_", "CHROME_", "PYTEST_"))}
        xauth = self.root / "Xauthority"
        xauth.touch()
        runtime = self.root / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env.update({
            "HOME": str(self.home), "PATH": f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}",
            "XAUTHORITY": str(xauth), "XDG_RUNTIME_DIR": str(runtime), "SHELL": "/bin/bash",
            "USER": env.get("USER", "user"), MARKER_VAR: self.marker,
        })
        return env

    def _task_env(self) -> dict[str, str]:
        env = self._base_env()
        env["DISPLAY"] = self.display
        return env

    def _start_display(self, attempts: int = 3) -> str:
        """Xvfb on a free display + openbox; retried, since another server may race for the number."""
        missing = [b for b in ("Xvfb", "openbox", "wmctrl", "xterm") if shutil.which(b) is None]
        if missing:
            raise FileNotFoundError(f"the local desktop needs {', '.join(missing)} "
                                    f"(apt-get install xvfb openbox wmctrl xterm)")
        rc = self.root / "openbox" / "rc.xml"
        rc.parent.mkdir(exist_ok=True)
        rc.write_text(_OPENBOX_RC)
        error = ""
        for _ in range(attempts):
            try:
                return self._start_xvfb_and_wm(rc)
            except RuntimeError as e:
                error = str(e)
                for proc in (getattr(self, "_wm", None), getattr(self, "_xvfb", None)):
                    if proc is not None and proc.poll() is None:
                        proc.kill()
                        proc.wait(timeout=5)
                self._session_pids.clear()
        raise RuntimeError(error)

    def _start_xvfb_and_wm(self, rc: Path) -> str:
        env = self._base_env()
        read_fd, write_fd = os.pipe()
        with open(self.root / "xvfb.log", "wb") as log:
            self._xvfb = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{self.size[0]}x{self.size[1]}x24",
                 "-nolisten", "tcp", "-ac"],
                pass_fds=(write_fd,), env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        os.close(write_fd)
        self._session_pids.append(self._xvfb.pid)
        number = b""
        with os.fdopen(read_fd, "rb") as f:  # Xvfb writes "<n>\n" once it listens (EOF if it dies)
            while not number.endswith(b"\n"):
                chunk = f.read(1)
                if not chunk:
                    break
                number += chunk
        if not number.strip().isdigit():
            raise RuntimeError(f"Xvfb did not start: {_tail(self.root / 'xvfb.log')}")
        display = f":{number.strip().decode()}"
        env["DISPLAY"] = display
        with open(self.root / "openbox.log", "wb") as log:
            self._wm = subprocess.Popen(["openbox", "--config-file", str(rc)], env=env, cwd=self.home,
                                        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        self._session_pids.append(self._wm.pid)
        # openbox owns the WM selection once wmctrl can talk to it
        deadline = time.time() + 10
        while subprocess.run(["wmctrl", "-m"], env=env, capture_output=True).returncode != 0:
            if time.time() > deadline or self._wm.poll() is not None or self._xvfb.poll() is not None:
                raise RuntimeError(f"openbox did not start on {display} (openbox: "
                                   f"{_tail(self.root / 'openbox.log')}; Xvfb: {_tail(self.root / 'xvfb.log')})")
            time.sleep(0.05)
        return display

    def _restore_home(self) -> None:
        """Wipe the sandbox home and copy the template in (OSWorld's snapshot revert)."""
        if self.home.exists():
            _check_sandbox_home(self.home)
            shutil.rmtree(self.home)
        if self.home_template is not None:
            shutil.copytree(self.home_template, self.home, symlinks=True)
        else:
            self.home.mkdir(parents=True)
        for d in HOME_SKELETON:
            (self.home / d).mkdir(exist_ok=True)
        (self.home / SANDBOX_MARK).write_text(_SANDBOX_NOTE)

    def _kill_task_processes(self) -> None:
        """Everything the previous task started goes; the display and window manager stay."""
        self.controller.kill_all(grace_s=0, exclude=frozenset(self._session_pids))

    # ---- Environment protocol --------------------------------------------------------------
    @property
    def executor(self):
        if self._executor is None:
            from tools.desktop import DesktopExecutor

            self._executor = DesktopExecutor(display=self.display)
        return self._executor

    def reset(self, task: Task | dict | str | Path | None = None) -> Observation:
        if self._closed:
            raise RuntimeError("this DesktopEnvironment is closed")
        self._kill_task_processes()
        for log in (self.root / "runtime").glob("terminal-*.log"):
            log.unlink()
        self._restore_home()
        shutil.rmtree(self.controller.cache_dir, ignore_errors=True)
        self.action_history = []
        self.skip_reason = self.setup_error = None
        self.task = as_task(task) if task is not None else None
        self.controller.task_id = self.task.id if self.task else ""
        if self.task is None:
            return self._observe()
        self.skip_reason, self.setup_error = start_task(self.task, self.controller, settle_s=self.settle_s)
        return self._observe(observation_extra(self.task, self.skip_reason, self.setup_error))

    def _observe(self, extra: dict | None = None) -> Observation:
        return Observation(screenshot=self.controller.screenshot(), extra=extra or {})

    def step(self, action: Action, target: tuple[float, float] | None = None) -> tuple[Observation, ActionOutcome]:
        self.action_history.append(action)
        outcome = self.executor.execute(action, target)
        if not outcome.done:
            time.sleep(self.step_pause_s)
        return self._observe(), outcome

    def evaluate(self) -> EvalResult:
        return evaluate_environment(self.task, self.controller, self.action_history, self.skip_reason,
                                    self.setup_error)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            try:
                self._executor.close()
            except Exception:
                pass
        if getattr(self, "controller", None) is not None:
            self.controller.kill_all(grace_s=3.0)
        for name in ("_wm", "_xvfb"):
            proc = getattr(self, name, None)
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "DesktopEnvironment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _check_sandbox_home(home: Path) -> None:
    """Refuse to use (and later wipe) a folder that is not ours: only empty or marked folders."""
    if home.exists() and any(home.iterdir()) and not (home / SANDBOX_MARK).exists():
        raise ValueError(f"home {home} is not empty and not a qvl sandbox home; it would be wiped on every "
                         f"reset. Give an empty or new folder (the template goes in home_template=)")


def _tail(path: Path, chars: int = 400) -> str:
    text = path.read_text(errors="replace").strip() if path.is_file() else ""
    return text[-chars:] or "no output"


def _screen_size(display: str) -> tuple[int, int]:
    from environments.controller import _mss_factory

    with _mss_factory()(display=display) as sct:
        m = sct.monitors[1]
    return m["width"], m["height"]
