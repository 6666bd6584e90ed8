"""`qvl-agent run` / `replay` end to end: a scripted policy fills and sends the bundled contact form in
the default sandboxed browser; the replay re-executes the recorded run with no model."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.trajectory import load_header, load_steps

pytestmark = pytest.mark.browser

W, H = 1280, 800  # BrowserEnvironment's default viewport
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def centres(chromium_path):
    """Centres of the elements the script clicks, measured in the same browser setup the CLI uses."""
    from environments.browser import BrowserEnvironment
    from environments.sites import serve_bundled_sites

    with serve_bundled_sites() as base:
        env = BrowserEnvironment(start_url=base + "/")
        try:
            env.reset()
            page = env.executor.page

            def centre(selector):
                box = page.locator(selector).bounding_box()
                return (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

            found = {"forms_link": centre("#app-forms")}
            page.goto(base + "/forms/")
            for name, sel in [("name", "#name"), ("email", "#email"), ("support", "[data-topic=support]"),
                              ("message", "#message"), ("submit", "#submit-button")]:
                found[name] = centre(sel)
        finally:
            env.close()
    return found


def grid(point):
    return [round(point[0] / W * 1000), round(point[1] / H * 1000)]


def call(args: dict, line: str | None = None) -> str:
    return (f"Action: {line}\n" if line else "") + "<tool_call>\n" + json.dumps(
        {"name": "computer_use", "arguments": args}) + "\n</tool_call>"


@pytest.fixture(scope="module")
def recorded_run(centres, tmp_path_factory):
    c = centres
    script = [
        call({"action": "left_click", "coordinate": grid(c["forms_link"])}, "Open the contact form."),
        call({"action": "left_click", "coordinate": grid(c["name"])}, "Click the name field."),
        call({"action": "type", "text": "Ada Lovelace"}, "Type the name."),
        call({"action": "left_click", "coordinate": grid(c["email"])}),
        call({"action": "type", "text": "ada@example.org"}),
        call({"action": "left_click", "coordinate": grid(c["support"])}, "Choose Support."),
        call({"action": "left_click", "coordinate": grid(c["message"])}),
        call({"action": "type", "text": "Bonjour, ça marche !"}),
        call({"action": "left_click", "coordinate": grid(c["submit"])}, "Send it."),
        call({"action": "terminate", "status": "success"}),
    ]
    root = tmp_path_factory.mktemp("cli")
    script_file = root / "script.json"
    script_file.write_text(json.dumps(script))
    out = root / "run"
    return script, script_file, out


def contact_entries(run_dir: Path) -> list[dict]:
    state = json.loads((run_dir / "sites" / "sites_state.json").read_text())
    return state["forms"].get("contact", [])


def test_run_with_script_completes_the_contact_form(recorded_run, centres, capsys):
    script, script_file, out = recorded_run
    rc = main(["run", "Send a support message as Ada Lovelace", "--script", str(script_file), "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    # the site received exactly what the agent typed
    assert contact_entries(out) == [{"name": "Ada Lovelace", "email": "ada@example.org", "phone": "",
                                     "topic": "support", "message": "Bonjour, ça marche !", "newsletter": False}]
    steps = load_steps(out)
    assert len(steps) == 10 and all(s.executed for s in steps) and steps[-1].done
    assert [s.raw_response for s in steps] == script
    for s in steps:
        assert (out / s.screenshot_file).exists()
    # the grid point maps back onto the element centre (within one grid cell: 1.28 x 0.8 px)
    assert steps[0].target_px == pytest.approx(centres["forms_link"], abs=1.3)
    assert steps[8].target_px == pytest.approx(centres["submit"], abs=1.3)
    header = load_header(out)
    assert header.env_kind == "browser" and header.bundled_sites_base and header.start_url.endswith("/")
    assert json.loads((out / "result.json").read_text())["status"] == "success"
    report = (out / "report.html").read_text()
    assert "Bonjour, ça marche !" in report and "data:image" not in report   # images are files, not base64
    thumbs = re.findall(r"src='(report_files/step_\d+\.jpg)'", report)
    assert len(thumbs) == 10 and all((out / t).read_bytes()[:3] == b"\xff\xd8\xff" for t in thumbs)   # JPEG
    assert report.count("<li><a href='#step_") == 10                       # the step index at the top
    assert len(report.encode()) < 30_000
    # progress per step, then the result
    lines = printed.out.splitlines()
    assert sum(line.startswith("step ") for line in lines) == 10
    assert any("left_click" in line and "-> px" in line for line in lines)
    assert "success after 10 steps" in printed.out


def test_replay_reexecutes_the_recorded_run(recorded_run, capsys, tmp_path):
    _, _, out = recorded_run
    if not (out / "traj.jsonl").exists():
        pytest.fail("the recorded run is missing: run the whole module")
    rc = main(["replay", str(out), "--out", str(tmp_path / "replay")])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert contact_entries(tmp_path / "replay") == contact_entries(out)  # the form was sent again
    original, replayed = load_steps(out), load_steps(tmp_path / "replay")
    assert [s.parsed_action for s in replayed] == [s.parsed_action for s in original]
    assert [s.target_px for s in replayed] == [s.target_px for s in original]
    assert load_header(tmp_path / "replay").model_extra["replay_of"] == str(out)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_run_and_replay_refuse_an_existing_out_and_change_nothing_there(recorded_run, capsys):
    _, script_file, out = recorded_run
    if not (out / "traj.jsonl").exists():
        pytest.fail("the recorded run is missing: run the whole module")
    before = _files(out)
    assert contact_entries(out)   # the recorded submission, which a reset of the sites would wipe
    for argv in (["run", "again", "--script", str(script_file), "--out", str(out)], ["replay", str(out), "--out", str(out)]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --out {out} already holds a run; nothing was changed there, choose another folder"]
    assert _files(out) == before


def _start_run(tmp_path: Path, name: str, steps: int) -> tuple[subprocess.Popen, Path]:
    """`qvl-agent run` in its own process, with a script of slow steps (2 s waits) so it can be killed midway; the
    pointer moves between waits, so the loop detector does not end the run early."""
    script = tmp_path / f"{name}.json"
    slow = [call({"action": "wait", "time": 2}) if i % 2 else call({"action": "mouse_move", "coordinate": [10 * i, 500]})
            for i in range(steps)]
    script.write_text(json.dumps(slow + [call({"action": "terminate", "status": "success"})]))
    out = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "wait a while", "--script", str(script),
                             "--out", str(out)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, out


def _wait_for_steps(proc: subprocess.Popen, out: Path, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ((out / "traj.jsonl").exists() and len((out / "traj.jsonl").read_text().splitlines()) >= n):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not record {n} steps: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)


def test_sigterm_ends_a_run_like_ctrl_c_with_result_and_report(tmp_path, chromium_path):
    proc, out = _start_run(tmp_path, "term", steps=30)
    _wait_for_steps(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "terminated"
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "error" and result["error"] == "interrupted" and 2 <= result["steps"] < 30
    report = (out / "report.html").read_text()
    assert report.count("<li><a href='#step_") == len(load_steps(out)) >= 2


def test_report_rebuilds_a_killed_run_and_skips_a_torn_screenshot(tmp_path, chromium_path, capsys):
    proc, out = _start_run(tmp_path, "killed", steps=30)
    _wait_for_steps(proc, out, 3)
    proc.kill()
    proc.wait(30)
    assert not (out / "result.json").exists() and not (out / "report.html").exists()
    steps = load_steps(out)
    torn = out / steps[-1].screenshot_file
    torn.write_bytes(torn.read_bytes()[:100])   # a screenshot cut short by the kill
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (f"{out / 'report.html'}: {len(steps)} step(s); the run has no "
                                                "result.json (it was killed)")
    report = (out / "report.html").read_text()
    assert report.count("<li><a href='#step_") == len(steps)
    assert report.count("src='report_files/step_") == len(steps) - 1 and "(screenshot unreadable)" in report
    assert "none recorded" in report


def test_help_lists_every_command_without_importing_the_runtime():
    """`qvl-agent --help` and a bad flag are answered before torch (seconds to import) is loaded."""
    probe = ("import sys; from agent.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    for argv in (["--help"], ["generate", "--model", "m", "--prompt", "p", "--bogus"], ["eval", "--profile", "x"]):
        done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert done.stdout.strip().splitlines()[-1] == "NO-TORCH", (argv, done.stdout, done.stderr)
    listed = subprocess.run([sys.executable, "-m", "agent.cli", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120).stdout
    from agent.cli import COMMANDS

    assert all(re.search(rf"^\s+{name}\s", listed, re.M) for name in COMMANDS), listed


def test_unreachable_server_gives_one_line_error(capsys, tmp_path, chromium_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["run", "do it", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith(f"error: cannot reach the model server at http://127.0.0.1:{port}/v1")
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "error"


def test_desktop_run_on_a_display_nobody_serves_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DISPLAY", ":1999")
    script = tmp_path / "s.json"
    script.write_text(json.dumps([call({"action": "terminate", "status": "success"})]))
    assert main(["run", "x", "--env", "desktop", "--script", str(script), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot open X display :1999") and "internal" not in err[0]


@pytest.mark.parametrize("argv, message", [
    (["run", "x", "--script", "/nonexistent/script.json"], "error: script /nonexistent/script.json does not exist"),
    (["run", "x", "--start-url", "example.com", "--script", "s.json"], "error: --start-url must be a full URL"),
    (["run", "x", "--env", "desktop", "--start-url", "http://a"], "error: --start-url applies to --env browser only"),
    (["run", "x", "--base-url", "http://a/v1"], "error: --base-url needs --model NAME"),
    (["run", "x", "--max-steps", "0", "--script", "s.json"], "error: max steps must be at least 1"),
    (["replay", "/nonexistent/run"], "error: run directory /nonexistent/run does not exist"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


@pytest.mark.display
def test_run_on_the_desktop_types_into_a_terminal(x_display, tmp_path, capsys):
    """`--env desktop` drives $DISPLAY: the script clicks into an xterm and runs a command in it."""
    marker = tmp_path / "marker.txt"
    term = subprocess.Popen(["xterm", "-geometry", "100x30+0+0", "-title", "agent-test"],
                            env={**os.environ, "DISPLAY": x_display},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        try:  # xdotool --sync waits for the window to be mapped; a loaded machine may take long to start xterm
            subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "agent-test"], check=True,
                           env={**os.environ, "DISPLAY": x_display}, stdout=subprocess.DEVNULL, timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("xterm did not map within 120 s")
        script = [
            call({"action": "left_click", "coordinate": [200, 200]}, "Focus the terminal."),
            call({"action": "type", "text": f"echo agent-was-here > {marker}"}),
            call({"action": "key", "keys": ["enter"]}),
            call({"action": "wait", "time": 0.5}),
            call({"action": "terminate", "status": "success"}),
        ]
        script_file = tmp_path / "script.json"
        script_file.write_text(json.dumps(script))
        rc = main(["run", "write a marker file", "--env", "desktop", "--script", str(script_file),
                   "--out", str(tmp_path / "run")])
        assert rc == 0, capsys.readouterr().err
    finally:
        term.terminate()
        term.wait(5)
    assert marker.read_text().strip() == "agent-was-here"
    header = load_header(tmp_path / "run")
    assert header.env_kind == "desktop" and header.display == x_display
    steps = load_steps(tmp_path / "run")
    assert steps[0].screen_size == (1280, 800) and steps[0].target_px == (256.0, 160.0)
