"""Shared fixtures: a real X display (Xvfb + openbox) and Debian's chromium.

Tests that need them fail loudly when the binaries are missing (`.ci/run` installs them); they are
never skipped silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tools.browser import CHROMIUM


def _free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise RuntimeError("no free X display number")


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        pytest.fail(f"{binary} is not installed (run .ci/run or apt-get install it)")
    return path


@pytest.fixture(scope="session")
def x_display():
    """A 1280x800 Xvfb display with an EWMH window manager; sets DISPLAY/XAUTHORITY for the session."""
    _require("Xvfb")
    n = _free_display()
    xauth = tempfile.NamedTemporaryFile(prefix="qvl-xauth-", delete=False)
    xauth.close()
    proc = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-ac"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("Xvfb did not start")
        time.sleep(0.05)
    old = {k: os.environ.get(k) for k in ("DISPLAY", "XAUTHORITY")}
    os.environ["DISPLAY"] = f":{n}"
    os.environ["XAUTHORITY"] = xauth.name
    wm = None
    if shutil.which("openbox"):
        wm = subprocess.Popen(["openbox"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
    try:
        yield f":{n}"
    finally:
        for p in (wm, proc):
            if p is not None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.unlink(xauth.name)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    return CHROMIUM


# Test helper modules (e.g. tests/tiny_checkpoints.py) are imported by name from any test folder. The repository
# root goes first so that tests/model/ (a folder without __init__.py) never shadows the `model` package when
# pytest is started as a plain `pytest` rather than `python -m pytest`.
import sys as _sys

_sys.path[:0] = [str(Path(__file__).parent.parent), str(Path(__file__).parent)]
