"""A local Linux desktop that runs OSWorld task files unmodified, without a VM.

One `DesktopEnvironment` is one task machine: an `environments.sandbox.Sandbox` (bubblewrap), in which
/home/user is the task's home and the user is uid 1000 with no privileges, running

- display: a private Xvfb (1920x1080 by default) on a display number claimed on the host with an X
  lock file, so several environments run side by side; openbox as the EWMH window manager (wmctrl
  works), ctrl+alt+t opens an xterm titled "Terminal". `display=":0"` drives that live desktop
  instead (its X socket and cookie are shared into the sandbox; no Xvfb, no openbox).
- a private session bus (`dbus-daemon --session` at /run/user/1000/bus, where OSWorld's tasks look
  for it): gsettings writes go to dconf, in ~/.config/dconf/user of the task's home.
- the home: restored on every reset from `home_template` plus the presets of environments/home_preset
  (LibreOffice, VLC, GIMP and Chromium past their first-run dialogs, saving in MS formats without
  asking, as OSWorld's snapshot has them).

`reset()` is OSWorld's snapshot revert: every process but the X server ends, the home, /tmp and
/run/user/1000 are restored, the bus and the window manager start afresh. `close()` ends the sandbox
and with it every process the task started. Tasks are OSWorld `Task`s (environments.tasks), a dict,
or a path to a task file. A task that cannot run here is *skipped*, with the reason in
`obs.extra["skipped"]` and in `evaluate()`; a setup step that fails leaves `obs.extra["setup_error"]`
and `evaluate()` reports status "error". Files that tasks download come from `mirror` (see
environments.setup.mirror_candidates), file:// or loopback URLs; with `online=True` other URLs may be
fetched and opened too (default: offline, those tasks skip). The sandbox keeps tasks off the host's
files and processes; it shares the host's network (chromium's DevTools port, local sites).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.actions import Action, ActionOutcome
from environments.base import EvalResult, Observation
from environments.controller import Controller
from environments.evaluate import as_task, evaluate_environment, observation_extra, start_task
from environments.sandbox import ETC_DIR, RUNTIME_DIR, SESSION_BUS, X11_SOCKETS, Sandbox, check_bwrap
from environments.tasks import Task
from tools.browser import CHROMIUM, CHROMIUM_ARGS

SANDBOX_MARK = ".qvl-sandbox-home"  # a caller-given home folder we may wipe carries this file
_SANDBOX_NOTE = "sandbox home of a qvl-agent DesktopEnvironment; wiped and restored on every reset\n"
HOME_SKELETON = ("Desktop", "Documents", "Downloads", "Music", "Pictures", "Videos", ".config")
PRESET_HOME = Path(__file__).with_name("home_preset")
# In the task sandbox chromium is an ordinary user's browser, so its own sandbox works: no --no-sandbox.
CHROMIUM_FLAGS = " ".join((*(a for a in CHROMIUM_ARGS if a != "--no-sandbox"), "--no-default-browser-check",
                           "--password-store=basic"))
FIRST_DISPLAY = 100  # own displays are numbered from here (tests' fixed displays use lower ones)
SESSION_START_S = 15

_OPENBOX_RC = """<?xml version="1.0" encoding="UTF-8"?>
<openbox_config xmlns="http://openbox.org/3.4/rc">
  <focus><focusNew>yes</focusNew></focus>
  <desktops><number>1</number></desktops>
  <keyboard>
    <keybind key="C-A-t"><action name="Execute"><command>qvl-terminal</command></action></keybind>
  </keyboard>
</openbox_config>
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DesktopEnvironment:
    """`environments.base.Environment` on a sandboxed X desktop; see the module docstring."""

    def __init__(self, display: str | None = None, size: tuple[int, int] = (1920, 1080),
                 home: Path | None = None, *, home_template: Path | None = None, mirror: Path | None = None,
                 client_password: str = "password", settle_s: float = 1.0, step_pause_s: float = 0.5,
                 online: bool = False) -> None:
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
            Path(home).mkdir(parents=True, exist_ok=True)
            (Path(home) / SANDBOX_MARK).write_text(_SANDBOX_NOTE)
        self._given_home = Path(home) if home is not None else None
        self.root = Path(tempfile.mkdtemp(prefix="qvl-desktop-"))
        self.sandbox: Sandbox | None = None
        self._xvfb: int | None = None  # pid in the sandbox
        self._display_lock: Path | None = None
        self._executor = None
        self.task: Task | None = None
        self.skip_reason: str | None = None
        self.setup_error: str | None = None
        self.action_history: list[Any] = []
        self._closed = False
        try:
            self._chrome_port = _free_port()
            if display is None:
                self.display = self._start_own_display()
            else:
                # the sandbox's HOME is not the user's: the cookie goes in explicitly
                xauth = os.environ.get("XAUTHORITY") or str(Path.home() / ".Xauthority")
                self.display = display
                self._start_sandbox(display, Path(xauth) if xauth and Path(xauth).is_file() else None)
                self.size = _screen_size(display)
            self.controller = Controller(
                sandbox=self.sandbox, cache_dir=self.root / "cache", display=self.display, screen_size=self.size,
                chrome_port=self._chrome_port, client_password=client_password,
                mirror=Path(mirror) if mirror is not None else None, online=online)
            self._revert()
            self._check_gsettings()
        except BaseException:
            self.close()
            raise

    @property
    def home(self) -> Path:
        """The host folder that is /home/user in the task."""
        return self.sandbox.home

    # ---- session ---------------------------------------------------------------------------
    def _start_sandbox(self, display: str, xauthority: Path | None) -> None:
        self.sandbox = Sandbox(self.root, home=self._given_home, env={"DISPLAY": display}, x11=True,
                               xauthority=xauthority,
                               shim_values={"CHROMIUM": CHROMIUM, "CHROME_PORT": str(self._chrome_port),
                                            "CHROMIUM_FLAGS": CHROMIUM_FLAGS})
        (self.sandbox.etc / "openbox-rc.xml").write_text(_OPENBOX_RC)

    def _start_own_display(self, attempts: int = 3) -> str:
        """A sandbox whose first session process is Xvfb on a claimed display number; retried on another
        number, since a server outside the lock-file convention may hold one."""
        missing = [b for b in ("Xvfb", "openbox", "wmctrl", "xterm", "dbus-daemon") if shutil.which(b) is None]
        if missing:
            raise FileNotFoundError(f"the local desktop needs {', '.join(missing)} "
                                    f"(apt-get install xvfb openbox wmctrl xterm dbus-daemon)")
        check_bwrap()
        error = ""
        for _ in range(attempts):
            number, self._display_lock = _claim_display()
            try:
                self._start_sandbox(f":{number}", None)
                w, h = self.size
                # -noreset: without it the server regenerates (recompiling its keymap into /tmp) each time
                # its last client goes, which a revert between tasks may be wiping
                self._xvfb = self.sandbox.launch(["Xvfb", f":{number}", "-screen", "0", f"{w}x{h}x24",
                                                  "-nolisten", "tcp", "-ac", "-noreset"], session=True)
                self._wait(lambda: _x_ready(number), f"Xvfb on :{number}", pid=self._xvfb)
                return f":{number}"
            except RuntimeError as e:
                error = str(e)
                self._stop_sandbox()
        raise RuntimeError(error)

    def _wait(self, ready, what: str, pid: int | None = None) -> None:
        deadline = time.time() + SESSION_START_S
        while not ready():
            if time.time() > deadline or (pid is not None and not self.sandbox.alive([pid])):
                log = self.sandbox.state / "launched.log"
                tail = log.read_text(errors="replace")[-600:] if log.is_file() else ""
                raise RuntimeError(f"{what} did not start: {tail.strip() or 'no output'}")
            time.sleep(0.05)

    def _start_session(self) -> None:
        """The session bus, and the window manager on our own display."""
        bus = self.sandbox.launch(["dbus-daemon", "--session", "--address", SESSION_BUS, "--nofork",
                                   "--nopidfile"], session=True)
        self._wait(lambda: (self.sandbox.runtime / "bus").exists(), "the session bus", pid=bus)
        if self._xvfb is not None:
            wm = self.sandbox.launch(["openbox", "--config-file", f"{ETC_DIR}/openbox-rc.xml"], session=True)
            self._wait(lambda: self.sandbox.run(["wmctrl", "-m"], timeout=5).returncode == 0,
                       f"openbox on {self.display}", pid=wm)

    def _check_gsettings(self) -> None:
        """Without the dconf backend, GLib keeps gsettings writes in memory and exits 0: a task's
        `gsettings set` would do nothing while looking fine. Refuse to run so."""
        if self.controller.which("gsettings") is None:
            return
        r = self.controller.run(["gsettings", "get", "org.gnome.desktop.interface", "text-scaling-factor"])
        if "Can't find module 'dconf'" in r.error:
            raise FileNotFoundError("gsettings would save nothing here: the dconf backend is missing "
                                    "(apt-get install dconf-gsettings-backend)")

    def _revert(self) -> None:
        """OSWorld's snapshot revert: only the X server survives; home, /tmp and the runtime folder are
        restored; the session starts afresh."""
        self.sandbox.kill(keep=(self._xvfb,) if self._xvfb is not None else (), grace_s=0)
        _empty(self.sandbox.home, keep={SANDBOX_MARK} if self._given_home is not None else set())
        _empty(self.sandbox.runtime)
        number = self.display.split(":")[-1].split(".")[0]
        _empty(self.sandbox.tmp, keep={X11_SOCKETS.name, f".X{number}-lock"})  # Xvfb's socket mount, lock
        home = self.sandbox.home
        if self.home_template is not None:
            shutil.copytree(self.home_template, home, symlinks=True, dirs_exist_ok=True)
        for src in sorted(PRESET_HOME.rglob("*")):  # the template wins over the presets
            dst = home / src.relative_to(PRESET_HOME)
            if src.is_dir():
                dst.mkdir(exist_ok=True)
            elif not dst.exists():
                shutil.copyfile(src, dst)
        for d in HOME_SKELETON:
            (home / d).mkdir(exist_ok=True)
        shutil.rmtree(self.controller.cache_dir, ignore_errors=True)
        self._start_session()

    def _stop_sandbox(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
        self._xvfb = None
        lock, self._display_lock = self._display_lock, None
        if lock is not None:  # Xvfb removed its socket unless it was killed; the number is ours until here
            number = lock.name[2:].split("-")[0]
            (X11_SOCKETS / f"X{number}").unlink(missing_ok=True)
            lock.unlink(missing_ok=True)

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
        self._revert()
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
        self._stop_sandbox()
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


def _empty(folder: Path, keep: set[str] = frozenset()) -> None:
    """Remove what `folder` holds (not the folder: it is a mount point in the sandbox)."""
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _claim_display(first: int = FIRST_DISPLAY) -> tuple[int, Path]:
    """A free X display number, claimed with the X lock file `/tmp/.X<n>-lock` (our pid), which every X
    server and our tests check before taking a number."""
    for n in range(first, first + 1000):
        lock = Path(f"/tmp/.X{n}-lock")
        if (X11_SOCKETS / f"X{n}").exists():
            continue
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            continue
        os.write(fd, f"{os.getpid():>10}\n".encode())
        os.close(fd)
        return n, lock
    raise RuntimeError("no free X display number")


def _x_ready(number: int) -> bool:
    """The X server answers a connection: it has initialised (it listens before it has compiled its
    keymap into /tmp, which a revert must not wipe under it)."""
    if not (X11_SOCKETS / f"X{number}").exists():
        return False
    from Xlib import display, error

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # python-xlib prints xauth warnings
            display.Display(f":{number}").close()
        return True
    except (error.DisplayError, error.ConnectionClosedError, OSError):
        return False


def _screen_size(display: str) -> tuple[int, int]:
    from tools.screenshots import open_mss

    with open_mss(display) as sct:
        m = sct.monitors[1]
    return m["width"], m["height"]
