"""In-process replacement of OSWorld's in-VM server: commands, files, windows and screenshots
of one sandboxed desktop session.

OSWorld tasks hard-code `/home/user` and fixed ports. Here every task runs with HOME set to a
private sandbox home, and `/home/user` in commands, step parameters and getter paths is mapped to
it (`map_text`/`map_path`), so a task can never touch the real user's files. Chrome's fixed
debugging port 1337 (and the 9222 socat relay) becomes a free port per environment, rewritten by
the `google-chrome` shim, so several environments can run side by side.

Every process started here inherits `QVL_DESKTOP_ENV=<marker>` in its environment; `kill_all`
finds them through /proc, even ones that left their process group (nohup/setsid), and the
`pkill` shim only ever signals processes that carry the marker.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

OSWORLD_HOME = "/home/user"
COMMAND_TIMEOUT_S = 120  # OSWorld server's subprocess timeout
MARKER_VAR = "QVL_DESKTOP_ENV"
CHROME_PORT_VAR = "QVL_CHROME_PORT"

_HOME_RE = re.compile(re.escape(OSWORLD_HOME) + r"(?![\w.-])")


@dataclass
class CommandResult:
    output: str
    error: str
    returncode: int


class Controller:
    """What setup steps, getters and the environment need from the task's machine."""

    def __init__(self, *, env: dict[str, str], home: Path, cache_dir: Path, display: str,
                 screen_size: tuple[int, int], marker: str, chrome_port: int,
                 client_password: str = "password", mirror: Path | None = None, task_id: str = "",
                 online: bool = False, allow_host_changes: bool = False) -> None:
        self.env = env
        self.home = Path(home)
        self.cache_dir = Path(cache_dir)
        self.display = display
        self.screen_size = screen_size
        self.marker = marker
        self.chrome_port = chrome_port
        self.client_password = client_password
        self.mirror = Path(mirror) if mirror is not None else None
        self.online = online  # may setup/getters reach non-local URLs?
        self.allow_host_changes = allow_host_changes  # may tasks run apt-get, useradd, timedatectl, ...?
        self.task_id = task_id
        self._launched: list[subprocess.Popen] = []

    # ---- paths -------------------------------------------------------------------------------
    def map_text(self, text: str) -> str:
        """`/home/user` (OSWorld's home) → the sandbox home, in any string."""
        return _HOME_RE.sub(str(self.home).replace("\\", "\\\\"), text)

    def map_path(self, path: str | os.PathLike) -> Path:
        """A task path as the VM server sees it: `/home/user/...`, `~/...`, or relative to the home."""
        p = self.map_text(os.fspath(path))
        if p == "~" or p.startswith("~/"):
            p = str(self.home) + p[1:]
        q = Path(p)
        return q if q.is_absolute() else self.home / q

    @property
    def task_cache(self) -> Path:
        """OSWorld's `cache/<task id>/`: getter copies and `stdout:` captures land here."""
        d = self.cache_dir / (self.task_id or "_")
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ---- processes ---------------------------------------------------------------------------
    def _command(self, command: str | list[str], shell: bool) -> str | list[str]:
        if isinstance(command, str):
            command = self.map_text(command)
            return command if shell else shlex.split(command)
        args = [self.map_text(str(a)) for a in command]
        return [str(self.home) + a[1:] if a.startswith("~/") else a for a in args]

    def run(self, command: str | list[str], shell: bool = False, timeout: float = COMMAND_TIMEOUT_S,
            stdin: str | None = None) -> CommandResult:
        """`POST /setup/execute`: run to completion in the home dir; output as text."""
        cmd = self._command(command, shell)
        try:
            p = subprocess.run(cmd, shell=shell, cwd=self.home, env=self.env, input=stdin,
                               stdin=None if stdin is not None else subprocess.DEVNULL,
                               capture_output=True, text=True, errors="replace", timeout=timeout,
                               start_new_session=True)
        except FileNotFoundError as e:
            return CommandResult("", f"{e.filename}: command not found", 127)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return CommandResult(out, f"timed out after {timeout:g} s", -1)
        return CommandResult(p.stdout, p.stderr, p.returncode)

    def launch(self, command: str | list[str], shell: bool = False) -> subprocess.Popen:
        """`POST /setup/launch`: start and do not wait."""
        cmd = self._command(command, shell)
        proc = subprocess.Popen(cmd, shell=shell, cwd=self.home, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self._launched = [p for p in self._launched if p.poll() is None] + [proc]
        return proc

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.env.get("PATH"))

    def marked_pids(self) -> list[int]:
        """Every live process that carries this environment's marker."""
        needle = f"{MARKER_VAR}={self.marker}".encode()
        pids = []
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                continue
        return pids

    def kill_all(self, grace_s: float = 3.0, exclude: frozenset[int] = frozenset()) -> None:
        """SIGTERM every marked process (but `exclude`) and every process below them, SIGKILL what is left
        after `grace_s`; all gone before this returns.

        Chromium's zygote, renderers and services run with a cleaned environment, so they carry no marker;
        they are found as descendants while their parent still lives. Left alone they die a moment after
        it, writing into the profile while the home is being wiped."""
        marked = set(self.marked_pids()) - exclude
        pids = sorted(_descendants(marked) - exclude)
        if grace_s > 0:
            for pid in pids:
                _signal(pid, signal.SIGTERM)
            deadline = time.time() + grace_s
            while (pids := [p for p in pids if _alive(p)]) and time.time() < deadline:
                time.sleep(0.05)
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        # Reap the children launched here so they do not linger as zombies.
        for proc in self._launched:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._launched.clear()
        deadline = time.time() + 5
        while (pids := [p for p in pids if _alive(p)]) and time.time() < deadline:
            time.sleep(0.02)

    # ---- files -------------------------------------------------------------------------------
    def get_file(self, path: str) -> bytes | None:
        """`POST /file`: the bytes, or None when missing (the server answers 404)."""
        p = self.map_path(path)
        return p.read_bytes() if p.is_file() else None

    def put_file(self, path: str, data: bytes) -> Path:
        """`POST /setup/upload`: parents created; relative paths are relative to the home."""
        p = self.map_path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def list_directory(self, path: str) -> dict:
        """`POST /list_directory`: `{type, name, children}` tree in os.listdir order."""
        root = self.map_path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"not a directory: {path}")

        def walk(p: Path) -> dict:
            if p.is_dir():
                return {"type": "directory", "name": p.name,
                        "children": [walk(p / c) for c in os.listdir(p)]}
            return {"type": "file", "name": p.name}

        return walk(root)

    # ---- windows -----------------------------------------------------------------------------
    def wmctrl(self, *args: str) -> CommandResult:
        return self.run(["wmctrl", *args], timeout=10)

    def window_titles(self) -> list[str]:
        out = self.wmctrl("-l").output
        # "0x01e00003  0 host Title words": title is everything after the 4th column.
        return [parts[3] for line in out.splitlines() if len(parts := line.split(None, 3)) == 4]

    def activate_window(self, window_name: str, strict: bool = False, by_class: bool = False) -> bool:
        flag = "-xa" if by_class else ("-Fa" if strict else "-a")
        return self.wmctrl(flag, window_name).returncode == 0

    def close_window(self, window_name: str, strict: bool = False, by_class: bool = False) -> bool:
        flag = "-xc" if by_class else ("-Fc" if strict else "-c")
        return self.wmctrl(flag, window_name).returncode == 0

    def wait_for_window(self, needles: list[str], timeout: float) -> str | None:
        """First window title containing one of `needles`, polling until `timeout`."""
        deadline = time.time() + timeout
        while True:
            for title in self.window_titles():
                if any(n and n in title for n in needles):
                    return title
            if time.time() >= deadline:
                return None
            time.sleep(0.5)

    # ---- screen ------------------------------------------------------------------------------
    def screenshot(self) -> Image.Image:
        """RGB screenshot of the display with the cursor drawn (as OSWorld's server returns)."""
        with _mss_factory()(display=self.display, with_cursor=True) as sct:
            shot = sct.grab(sct.monitors[1])
        return Image.frombytes("RGB", shot.size, shot.rgb)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(roots: set[int]) -> set[int]:
    """`roots` and every live process below them (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
            children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _mss_factory():
    import mss

    return getattr(mss, "MSS", None) or mss.mss  # mss >= 10 renamed the factory
