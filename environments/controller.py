"""In-process replacement of OSWorld's in-VM server: commands, files, windows and screenshots
of one task's machine, which is an `environments.sandbox.Sandbox`.

Commands run inside the sandbox, as OSWorld's server runs them inside the VM: as `user` (uid 1000)
in /home/user, nothing rewritten. Files are read and written where the sandbox's mounts live on the
host (`Sandbox.host_path`). Chrome's fixed debugging port 1337 (and the 9222 socat relay) becomes a
free port per environment, set by the `google-chrome` shim, so several environments run side by side.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from environments.sandbox import COMMAND_TIMEOUT_S, CommandResult, Sandbox
from tools.screenshots import grab, open_mss


class Controller:
    """What setup steps, getters and the environment need from the task's machine."""

    def __init__(self, *, sandbox: Sandbox, cache_dir: Path, display: str, screen_size: tuple[int, int],
                 chrome_port: int, client_password: str = "password", mirror: Path | None = None,
                 task_id: str = "", online: bool = False) -> None:
        self.sandbox = sandbox
        self.cache_dir = Path(cache_dir)
        self.display = display
        self.screen_size = screen_size
        self.chrome_port = chrome_port
        self.client_password = client_password
        self.mirror = Path(mirror) if mirror is not None else None
        self.online = online  # may setup/getters reach non-local URLs?
        self.task_id = task_id
        # setup/postconfig commands that exited non-zero (OSWorld ignores them; we report them)
        self.failed_commands: list[dict] = []

    @property
    def home(self) -> Path:
        """The host folder that is /home/user in the sandbox."""
        return self.sandbox.home

    @property
    def env(self) -> dict[str, str]:
        """The environment every process in the sandbox starts with."""
        return self.sandbox.env

    def host_path(self, path: str | os.PathLike, write: bool = False) -> Path:
        """Where the task's file `path` (/home/user/..., ~/..., relative to the home) is on the host."""
        return self.sandbox.host_path(path, write=write)

    @property
    def task_cache(self) -> Path:
        """OSWorld's `cache/<task id>/`: getter copies and `stdout:` captures land here."""
        d = self.cache_dir / (self.task_id or "_")
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ---- processes ---------------------------------------------------------------------------
    def run(self, command: str | list[str], shell: bool = False, timeout: float = COMMAND_TIMEOUT_S,
            stdin: str | None = None) -> CommandResult:
        """`POST /setup/execute`: run to completion in the home dir; output as text."""
        return self.sandbox.run(command, shell=shell, timeout=timeout, stdin=stdin)

    def launch(self, command: str | list[str], shell: bool = False) -> int:
        """`POST /setup/launch`: start and do not wait; the pid inside the sandbox."""
        return self.sandbox.launch(command, shell=shell)

    def which(self, name: str) -> str | None:
        return self.sandbox.which(name)

    # ---- files -------------------------------------------------------------------------------
    def get_file(self, path: str) -> bytes | None:
        """`POST /file`: the bytes, or None when missing (the server answers 404)."""
        try:
            p = self.host_path(path)
        except FileNotFoundError:
            return None
        return p.read_bytes() if p.is_file() else None

    def put_file(self, path: str, data: bytes) -> Path:
        """`POST /setup/upload`: parents created; relative paths are relative to the home."""
        p = self.host_path(path, write=True)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def list_directory(self, path: str) -> dict:
        """`POST /list_directory`: `{type, name, children}` tree in os.listdir order."""
        try:
            root = self.host_path(path)
        except FileNotFoundError:
            root = None
        if root is None or not root.is_dir():
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
        with open_mss(self.display, with_cursor=True) as sct:
            return grab(sct, sct.monitors[1])

