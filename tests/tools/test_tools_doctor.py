"""`qvl-agent doctor` on real X displays: agreement, a provoked mismatch, multi-monitor offsets, no display."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from tools.base import ScreenGeometry

pytestmark = pytest.mark.display
REPO = Path(__file__).resolve().parents[2]


def _doctor_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_doctor_reports_agreement_on_the_xvfb_display(x_display, capsys):
    code, report = _doctor_json(capsys)
    assert code == 0, report
    assert report["agree"] is True and report["display"] == x_display
    [monitor] = report["monitors"]
    assert monitor["screenshot_size"] == [1280, 800] and monitor["input_size"] == [1280, 800]
    assert monitor["scale"] == 1.0 and monitor["problems"] == []
    assert len(monitor["markers"]) == 5
    for m in monitor["markers"]:
        assert m["found_shot"] is not None and m["shot_error_px"] <= 1.0
        assert m["cursor"] == m["input_point"]
    # relative (900, 100) of 1280x800 is pixel (1152, 80)
    assert [m for m in monitor["markers"] if m["relative"] == [900, 100]][0]["found_shot"] == [1152.0, 80.0]


def test_doctor_catches_a_wrong_input_mapping(x_display, capsys, monkeypatch):
    import tools.desktop

    def half_width_input(monitor, shot_size, input_per_monitor_unit=1.0):
        # the classic HiDPI bug: assume the input space is half the capture when it is not
        return ScreenGeometry(shot_size[0], shot_size[1], monitor["width"] // 2, monitor["height"] // 2,
                              monitor["left"], monitor["top"])

    monkeypatch.setattr(tools.desktop, "geometry_for_monitor", half_width_input)
    code, report = _doctor_json(capsys)
    assert code == 1 and report["agree"] is False
    problems = report["monitors"][0]["problems"]
    assert problems and "px off" in problems[0]
    m = [m for m in report["monitors"][0]["markers"] if m["relative"] == [900, 100]][0]
    assert m["found_shot"] == [576.0, 40.0]  # drawn where the bad mapping sent the pointer


def test_doctor_human_output(x_display, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "monitor 1: 1280x800+0+0" in out and "OK" in out and "all coordinates agree" in out


def test_doctor_without_a_display_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    assert main(["doctor", "--json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no X display: set DISPLAY (e.g. DISPLAY=:0) or pass --display"]


@pytest.mark.slow
def test_doctor_checks_each_monitor_with_its_offset(tmp_path):
    """Two RandR monitors side by side on a private Xvfb (the right one at +640+0); a separate process,
    because pyautogui binds to one display per process."""
    n = next(i for i in range(300, 400) if not Path(f"/tmp/.X11-unix/X{i}").exists())
    xauth = tmp_path / "xauth"
    xauth.touch()
    env = {**os.environ, "DISPLAY": f":{n}", "XAUTHORITY": str(xauth)}
    xvfb = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-ac",
                             "-noreset"],  # keep the RandR monitors when xrandr disconnects
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            assert time.time() < deadline and xvfb.poll() is None, "Xvfb did not start"
            time.sleep(0.05)
        for name, geometry in (("LEFT", "640/170x800/212+0+0"), ("RIGHT", "640/170x800/212+640+0")):
            subprocess.run(["xrandr", "--setmonitor", name, geometry, "none"], env=env, check=True)
        run = subprocess.run([sys.executable, "-m", "agent.cli", "doctor", "--json"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)
        by_offset = {tuple(m["input_offset"]): m for m in report["monitors"]}
        right = by_offset[(640, 0)]
        assert right["screenshot_size"] == [640, 800] and right["agree"]
        centre = [m for m in right["markers"] if m["relative"] == [500, 500]][0]
        assert centre["input_point"] == [960, 400] and centre["cursor"] == [960, 400]
        assert centre["found_shot"] == [320.0, 400.0]
        assert (0, 0) in by_offset
    finally:
        xvfb.terminate()
        xvfb.wait(5)


def test_doctor_bad_monitor_and_unreachable_display(x_display, capsys):
    assert main(["doctor", "--monitor", "9"]) == 1
    assert capsys.readouterr().err.strip() == f"error: --monitor 9: display {x_display} has monitors 1..1"
    assert main(["doctor", "--display", ":4244"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot capture the screen of display :4244")
