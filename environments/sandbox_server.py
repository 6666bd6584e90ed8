"""The process inside a task sandbox that starts everything else there (OSWorld's in-VM server, in small).

Run by `environments.sandbox.Sandbox` as the first process of the sandbox (uid 1000, /home/user, its
own pid namespace); standard library only, since it runs wherever the interpreter is and imports
nothing from the project. It reads one JSON request per line on stdin and answers one JSON line on
stdout; nothing else can reach those pipes. Requests (`op`):

- `run`:    {command, shell, timeout, input} → {output, error, returncode}; the command's whole
            process group is killed at the timeout (OSWorld's server: subprocess.run, 120 s).
- `launch`: {command, shell, session} → {pid}; output goes to the sandbox log. The `pkill` shim
            spares `session` processes (Xvfb, the window manager, the session bus) and this one.
- `kill`:   {keep, grace_s} → {killed}; every process of the sandbox but this one and the pids in
            `keep`: SIGTERM, then SIGKILL after `grace_s`, all gone before the answer.
- `alive`:  {pids} → {alive: [pids]}.
- `exit`:   answer, then stop (the sandbox ends with this process).
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

HOME = os.environ.get("HOME", "/home/user")
STATE_DIR = os.environ.get("QVL_STATE_DIR", "/run/qvl/var")
PROTECTED_FILE = os.path.join(STATE_DIR, "protected-pids")  # read by the pkill shim
LOG_FILE = os.path.join(STATE_DIR, "launched.log")

children: list = []  # Popen objects of launched processes, reaped as they exit
session: set = set()  # pids the pkill shim leaves alone


def _argv(command, shell):
    if shell:
        return command if isinstance(command, str) else " ".join(command)
    if isinstance(command, str):
        return shlex.split(command)
    return [os.path.expanduser(a) if a.startswith("~/") else a for a in map(str, command)]


def _write_protected() -> None:
    tmp = PROTECTED_FILE + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(str(p) for p in sorted(session | {1, os.getpid()})) + "\n")
    os.replace(tmp, PROTECTED_FILE)


def _reap() -> None:
    children[:] = [p for p in children if p.poll() is None]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def op_run(command, shell=False, timeout=120, input=None):
    try:
        p = subprocess.Popen(_argv(command, shell), shell=bool(shell), cwd=HOME, start_new_session=True,
                             stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as e:
        return {"output": "", "error": f"{e.filename}: command not found", "returncode": 127}
    except OSError as e:
        return {"output": "", "error": f"{command}: {e.strerror}", "returncode": 126}
    data = input.encode() if input is not None else None
    try:
        out, err = p.communicate(data, timeout=timeout)
        code = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:  # a process that left the group may still hold the pipes: do not wait for it
            out, err = p.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
        return {"output": out.decode(errors="replace"), "error": f"timed out after {timeout:g} s",
                "returncode": -1}
    return {"output": out.decode(errors="replace"), "error": err.decode(errors="replace"), "returncode": code}


def op_launch(command, shell=False, session_process=False):
    with open(LOG_FILE, "ab") as log:
        p = subprocess.Popen(_argv(command, shell), shell=bool(shell), cwd=HOME, start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    children.append(p)
    if session_process:
        session.add(p.pid)
        _write_protected()
    return {"pid": p.pid}


def op_kill(keep=(), grace_s=3.0):
    spare = {1, os.getpid(), *map(int, keep)}

    def others() -> list:
        return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in spare and _alive(int(e))]

    session.intersection_update(spare)
    _write_protected()
    pids = others()
    if grace_s > 0:
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.time() + grace_s
        while time.time() < deadline:
            _reap()
            pids = [p for p in pids if _alive(p)]
            if not pids:
                break
            time.sleep(0.02)
    # SIGKILL until nothing is left: a dying parent may still fork (chromium's zygote does)
    deadline = time.time() + 10
    while (pids := others()) and time.time() < deadline:
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.02)
        _reap()
    _reap()
    return {"killed": len(pids) == 0}


def op_alive(pids):
    return {"alive": [p for p in pids if _alive(int(p))]}


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


OPS = {"run": op_run, "launch": op_launch, "kill": op_kill, "alive": op_alive}


def main() -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    _write_protected()
    out = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "exit":
            print(json.dumps({}), file=out, flush=True)
            break
        if op == "launch":
            request["session_process"] = request.pop("session", False)
        try:
            answer = OPS[op](**request)
        except Exception as e:  # noqa: BLE001 - report to the host, keep serving
            answer = {"exception": f"{type(e).__name__}: {e}"}
        _reap()
        print(json.dumps(answer), file=out, flush=True)


if __name__ == "__main__":
    main()
