"""A per-task Linux sandbox (bubblewrap) in which `/home/user` is the task's home and the user is uid 1000.

OSWorld tasks run in a VM as `user` (uid 1000, home /home/user, password "password", a session D-Bus
at /run/user/1000/bus). Here each environment gets a bubblewrap sandbox with the same view:

- a user namespace that maps uid/gid 1000 to whoever runs the harness, with no capabilities: root
  on the host is `user` in the task (VLC refuses to run as root; `id -u` says 1000);
- a mount namespace: the host's file system read-only, and these folders of the environment's root
  folder mounted read-write: `home/` at /home/user, `tmp/` at /tmp, `run/` at /run/user/1000,
  `var/` at /run/qvl/var (the sandbox's log and state). /root and the other homes are hidden;
  /etc/passwd and /etc/group name uid 1000 `user`;
- a pid namespace: the sandbox's processes see only each other, `pkill` cannot reach the host, and
  killing the sandbox ends every process in it, including ones that setsid or daemonize;
- the host's network and /tmp/.X11-unix, so an X server inside is reachable from the harness
  (screenshots, input) and chromium's DevTools port from Playwright.

Commands go through `environments/sandbox_server.py`, the sandbox's first process, over its stdin and
stdout. The harness reads and writes the sandbox's files directly through `host_path`: a sandbox path
(`/home/user/x`, `~/x`, `x` relative to the home, `/tmp/x`) is the host file where that mount lives —
a location, never a rewrite of what the task runs.

Shims, first on the sandbox's PATH (/run/qvl/bin, from environments/shims/): `python`/`python3` (this
interpreter, which has pyautogui), `google-chrome` (Debian chromium), `socat`, `sudo` (no privileges),
`apt`/`apt-get` (answers installs from what is installed), `pkill` (spares the session), and the
ctrl+alt+t terminal.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

USER, UID, GID = "user", 1000, 1000
HOME = "/home/user"
RUNTIME_DIR = f"/run/user/{UID}"
SESSION_BUS = f"unix:path={RUNTIME_DIR}/bus"
QVL_DIR = "/run/qvl"
BIN_DIR = f"{QVL_DIR}/bin"
ETC_DIR = f"{QVL_DIR}/etc"  # files the harness writes for the sandbox (read-only inside)
STATE_DIR = f"{QVL_DIR}/var"
PATH = f"{BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
X11_SOCKETS = Path("/tmp/.X11-unix")
COMMAND_TIMEOUT_S = 120  # OSWorld server's subprocess timeout
SHIMS_DIR = Path(__file__).with_name("shims")
SERVER = Path(__file__).with_name("sandbox_server.py")
# Host folders the task must not see (other users' files, the harness's own home).
HIDDEN = ("/root", "/home", "/var/tmp")
SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers")


@dataclass
class CommandResult:
    output: str
    error: str
    returncode: int


class SandboxError(RuntimeError):
    """The sandbox could not start, or its server stopped answering."""


def check_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise FileNotFoundError("the task sandbox needs bubblewrap (apt-get install bubblewrap)")
    return path


class Sandbox:
    """One bubblewrap sandbox rooted at `root` (a folder the caller owns); see the module docstring.

    `home` is the host folder mounted at /home/user (default `root/home`); `shared` host folders appear
    read-only at their own paths (the bundled sites' state, which the harness writes); `env` adds
    variables to the sandbox's environment (DISPLAY, ...); `shim_values` fills the `@NAME@` fields of
    the shims; `x11` shares the host's /tmp/.X11-unix (an X server inside, or the host's display);
    `xauthority` is a host cookie file the sandbox may read (a live display)."""

    def __init__(self, root: Path, *, home: Path | None = None, env: dict[str, str] | None = None,
                 shim_values: dict[str, str] | None = None, x11: bool = False, xauthority: Path | None = None,
                 shared: tuple[Path, ...] = ()) -> None:
        self.root = Path(root)
        self._qvl = self.root / "qvl"
        self.home = Path(home) if home is not None else self.root / "home"
        self.tmp, self.runtime, self.state = self.root / "tmp", self.root / "run", self._qvl / "var"
        self.etc = self._qvl / "etc"
        # sandbox folder → (host folder, writable); the harness's files (shims, server) are read-only
        self.mounts = {HOME: (self.home, True), "/tmp": (self.tmp, True), RUNTIME_DIR: (self.runtime, True),
                       QVL_DIR: (self._qvl, False), STATE_DIR: (self.state, True),
                       **{str(Path(d).resolve()): (Path(d).resolve(), False) for d in shared}}
        for d in (*(host for host, _ in self.mounts.values()), self._qvl / "bin", self.etc):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        self.env = {
            "HOME": HOME, "USER": USER, "LOGNAME": USER, "SHELL": "/bin/bash", "PATH": PATH,
            "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": RUNTIME_DIR, "DBUS_SESSION_BUS_ADDRESS": SESSION_BUS,
            "QVL_STATE_DIR": STATE_DIR,
            "GSETTINGS_BACKEND": "dconf",  # never GLib's silent in-memory one: a missing backend is an error
            **({"TZ": os.environ["TZ"]} if "TZ" in os.environ else {}), **(env or {}),
        }
        if xauthority is not None:
            self.env["XAUTHORITY"] = f"{ETC_DIR}/Xauthority"
        self._write_files(shim_values or {}, xauthority)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._start(x11)

    # ---- start -------------------------------------------------------------------------------
    def _write_files(self, shim_values: dict[str, str], xauthority: Path | None) -> None:
        values = {"PYTHON": sys.executable, "PYTHONPATH": ":".join(_user_site_dirs()), **shim_values}
        for src in sorted(SHIMS_DIR.iterdir()):
            text = src.read_text()
            for k, v in values.items():
                text = text.replace(f"@{k}@", v)
            dst = self._qvl / "bin" / src.name
            dst.write_text(text)
            dst.chmod(0o755)
        (self._qvl / "server.py").write_text(SERVER.read_text())
        passwd = [line for line in _read_lines("/etc/passwd")
                  if line.split(":")[0] != USER and line.split(":")[2:3] != [str(UID)]]
        (self.etc / "passwd").write_text("\n".join(passwd + [f"{USER}:x:{UID}:{GID}:{USER}:{HOME}:/bin/bash"]) + "\n")
        group = [line for line in _read_lines("/etc/group")
                 if line.split(":")[0] != USER and line.split(":")[2:3] != [str(GID)]]
        (self.etc / "group").write_text("\n".join(group + [f"{USER}:x:{GID}:"]) + "\n")
        if xauthority is not None:
            shutil.copyfile(xauthority, self.etc / "Xauthority")

    def _bwrap_args(self, x11: bool) -> list[str]:
        args = [check_bwrap(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/dev/shm", "--tmpfs", "/run"]
        for d in HIDDEN:
            if os.path.isdir(d):
                args += ["--tmpfs", d]
        for f in SECRETS:
            if os.path.exists(f):
                args += ["--ro-bind", "/dev/null", f]
        args += ["--ro-bind", str(self.etc / "passwd"), "/etc/passwd",
                 "--ro-bind", str(self.etc / "group"), "/etc/group"]
        for inside, (host, writable) in sorted(self.mounts.items()):  # parents before children
            args += ["--bind" if writable else "--ro-bind", str(host), inside]
        # the interpreter the shims run, if it lives in a folder the sandbox hides or replaces (pyenv in
        # /root, a venv in a home or under /tmp): bound last, over the task's own /tmp
        for d in _python_dirs():
            args += ["--ro-bind", d, d]
        if x11:
            X11_SOCKETS.mkdir(mode=0o1777, exist_ok=True)
            args += ["--bind", str(X11_SOCKETS), str(X11_SOCKETS)]
        args += ["--unshare-user", "--uid", str(UID), "--gid", str(GID), "--unshare-pid", "--unshare-uts",
                 "--hostname", "osworld", "--die-with-parent", "--new-session", "--clearenv", "--chdir", HOME]
        for k, v in self.env.items():
            args += ["--setenv", k, v]
        return args + ["--", sys.executable, "-I", f"{QVL_DIR}/server.py"]

    def _start(self, x11: bool) -> None:
        with open(self.state / "bwrap.log", "wb") as log:
            self._proc = subprocess.Popen(self._bwrap_args(x11), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, start_new_session=True)
        hello = self._read_answer(timeout=30)
        if "ready" not in hello:
            raise SandboxError(f"the sandbox server did not start: {hello}")

    # ---- requests ----------------------------------------------------------------------------
    def _read_answer(self, timeout: float) -> dict:
        out = self._proc.stdout
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else b""
        if not line:
            self._proc.kill()
            raise SandboxError(f"the sandbox stopped answering ({_tail(self.state / 'bwrap.log')})")
        return json.loads(line)

    def request(self, op: str, wait_s: float = 60, **params) -> dict:
        """One request to the sandbox's server; its answer, waited for at most `wait_s`."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                raise SandboxError("the sandbox is not running")
            self._proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
            self._proc.stdin.flush()
            answer = self._read_answer(wait_s)
        if "exception" in answer:
            raise SandboxError(f"sandbox {op}: {answer['exception']}")
        return answer

    def run(self, command: str | list[str], shell: bool = False, timeout: float = COMMAND_TIMEOUT_S,
            stdin: str | None = None) -> CommandResult:
        """Run to completion as the task's user in /home/user; output as text (OSWorld's `/setup/execute`)."""
        a = self.request("run", wait_s=timeout + 30, command=command, shell=bool(shell), timeout=timeout,
                         input=stdin)
        return CommandResult(a["output"], a["error"], a["returncode"])

    def launch(self, command: str | list[str], shell: bool = False, session: bool = False) -> int:
        """Start without waiting (OSWorld's `/setup/launch`); the pid inside the sandbox."""
        return self.request("launch", command=command, shell=bool(shell), session=session)["pid"]

    def kill(self, keep: tuple[int, ...] = (), grace_s: float = 3.0) -> None:
        """End every process of the sandbox but its server and `keep`; all gone when this returns."""
        self.request("kill", wait_s=grace_s + 30, keep=list(keep), grace_s=grace_s)

    def alive(self, pids: list[int]) -> list[int]:
        return self.request("alive", pids=list(pids))["alive"]

    @property
    def pid(self) -> int | None:
        """The host pid of bwrap (its pid namespace holds every process of the sandbox)."""
        return self._proc.pid if self._proc is not None else None

    # ---- files -------------------------------------------------------------------------------
    def host_path(self, path: str | os.PathLike, write: bool = False) -> Path:
        """Where the sandbox file `path` lives on the host.

        `~` and relative paths are the home's (the VM server's cwd is /home/user). The read-write
        mounts map to their folders; other paths are the read-only host files, which cannot be
        written (PermissionError) and, in the hidden folders, do not exist (FileNotFoundError)."""
        pure = PurePosixPath(absolute(path))
        for inside, (host, writable) in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if _within(pure, inside):
                if write and not writable:
                    raise PermissionError(f"{pure} is read-only in the task sandbox")
                return host / pure.relative_to(inside)
        if write:
            raise PermissionError(f"{pure} is read-only in the task sandbox")
        if any(_within(pure, h) for h in (*HIDDEN, "/run")):
            raise FileNotFoundError(f"{pure} does not exist in the task sandbox")
        return Path(pure)

    def which(self, name: str) -> str | None:
        """The sandbox path of the executable `name` (found on the sandbox's PATH), or None."""
        for candidate in [absolute(name)] if "/" in name else [f"{d}/{name}" for d in PATH.split(":")]:
            try:
                host = self.host_path(candidate)
            except FileNotFoundError:
                continue
            if host.is_file() and os.access(host, os.X_OK):
                return candidate
        return None

    # ---- end ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Every process of the sandbox ends (they get SIGTERM and 3 s first)."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                self.kill(grace_s=3.0)
                self.request("exit", wait_s=5)
        except SandboxError:
            pass
        finally:
            self._proc = None
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()  # --die-with-parent: the sandbox's init, and with it the namespace, follow
                proc.wait(timeout=5)
            for f in (proc.stdin, proc.stdout):
                f.close()


def absolute(path: str | os.PathLike) -> str:
    """A task's path as the VM server resolves it: `~` is /home/user, relative paths are in the home."""
    p = os.fspath(path)
    if p == "~" or p.startswith("~/"):
        p = HOME + p[1:]
    return os.path.normpath(p if p.startswith("/") else f"{HOME}/{p}")


def _read_lines(path: str) -> list[str]:
    try:
        return [line for line in Path(path).read_text().splitlines() if line.count(":") >= 3]
    except OSError:
        return []


def _within(path: PurePosixPath, folder: str) -> bool:
    return path == PurePosixPath(folder) or PurePosixPath(folder) in path.parents


def _under_hidden(path: str) -> bool:
    return any(_within(PurePosixPath(path), h) for h in (*HIDDEN, "/tmp", "/run"))


def _python_dirs() -> list[str]:
    """Folders of this interpreter and its packages that the sandbox would hide (HIDDEN, and /tmp and /run,
    which it replaces): pyenv keeps Python in /root, a venv may live in a home or under /tmp."""
    dirs = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), *_user_site_dirs()}
    spec = importlib.util.find_spec("pyautogui")
    if spec is not None and spec.origin:
        dirs.add(os.path.dirname(os.path.dirname(spec.origin)))
    out = sorted(d for d in dirs if _under_hidden(d) and os.path.isdir(d))
    return [d for d in out if not any(d != o and d.startswith(o + "/") for o in out)]  # outermost only


def _user_site_dirs() -> list[str]:
    """Site folders outside the interpreter's prefix (a user site), which the shims add to PYTHONPATH:
    inside, HOME is /home/user, so Python would not find the harness user's own site folder."""
    import site

    prefixes = (sys.base_prefix, sys.prefix)
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    return [user] if user and os.path.isdir(user) and not user.startswith(prefixes) else []


def _tail(path: Path, chars: int = 400) -> str:
    text = path.read_text(errors="replace").strip() if path.is_file() else ""
    return text[-chars:] or "no output"
