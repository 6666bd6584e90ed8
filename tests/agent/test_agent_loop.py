"""The loop on an in-test environment: trajectories, loop detection, max steps, parse retries, dry run,
confirmation, errors, replay from a recorded run, and the Python API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from agent.actions import Action, ActionOutcome
from agent.api import Agent
from agent.loop import AgentConfig, run_episode, screen_hash
from agent.policies import PolicyError, PolicyReply, ScriptedPolicy
from agent.safety import risk_reason, terminal_confirm
from agent.trajectory import load_header, load_steps
from environments.base import Observation
from tools.base import ScreenGeometry

OSWORLD_KEYS = {"step_num", "action_timestamp", "action", "response", "reward", "done", "info", "screenshot_file"}


def screen(state: int, size=(400, 250)) -> Image.Image:
    """A screen whose look depends on `state` (a bar that moves), so perceptual hashes differ."""
    im = Image.new("RGB", size, (240, 240, 240))
    d = ImageDraw.Draw(im)
    x = 20 + (state * 47) % (size[0] - 80)
    d.rectangle([x, 20, x + 60, size[1] - 20], fill=(20, 40, 200))
    return im


class FakeExecutor:
    def __init__(self, env, geometry: ScreenGeometry, password: bool = False):
        self.env, self.geometry, self.password = env, geometry, password

    def screenshot(self):
        return self.env.current()

    def focused_is_password(self) -> bool:
        return self.password


class FakeEnv:
    """Records every (action, target); the screen changes after each action unless `static`."""

    def __init__(self, static: bool = False, size=(400, 250), geometry: ScreenGeometry | None = None):
        self.static, self.size, self.state = static, size, 0
        self.steps: list[tuple[Action, tuple[float, float] | None]] = []
        self.executor = FakeExecutor(self, geometry or ScreenGeometry(size[0], size[1], size[0], size[1]))
        self.closed = False

    def current(self) -> Image.Image:
        return screen(self.state, self.size)

    def reset(self, task=None) -> Observation:
        self.state = 0
        return Observation(self.current())

    def step(self, action, target=None):
        self.steps.append((action, target))
        if not self.static:
            self.state += 1
        final = action.action in ("terminate", "answer")
        return Observation(self.current()), ActionOutcome(
            done=final, success=(action.status == "success") if action.action == "terminate" else None,
            answer=action.text if action.action == "answer" else None)

    def close(self):
        self.closed = True


def tc(args: dict, line: str | None = None) -> str:
    body = "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": args}) + "\n</tool_call>"
    return (f"Action: {line}\n" if line else "") + body


CLICK = tc({"action": "left_click", "coordinate": [250, 500]}, "Click the bar.")
DONE = tc({"action": "terminate", "status": "success"})


def test_run_records_trajectory_screenshots_and_report(tmp_path):
    env = FakeEnv()
    script = ["<think>\n\n</think>\n\n" + CLICK, tc({"action": "type", "text": "héllo <b>"}, "Type."),
              tc({"action": "key", "keys": ["ctrl", "s"]}), DONE]
    out = tmp_path / "run"
    res = run_episode(env, ScriptedPolicy(script), "save the file", env.reset(), config=AgentConfig(), out_dir=out)
    assert res.status == "success" and res.steps == 4 and res.last_action.status == "success"
    # every action, terminate included, went through env.step; the click landed at grid → pixels
    assert [a.action for a, _ in env.steps] == ["left_click", "type", "key", "terminate"]
    assert env.steps[0][1] == (100.0, 125.0)
    recs = load_steps(out)
    assert len(recs) == 4
    raw = [json.loads(line) for line in (out / "traj.jsonl").read_text().splitlines()]
    assert all(OSWORLD_KEYS <= set(r) for r in raw)
    assert raw[0]["action"] == {"action": "left_click", "coordinate": [250, 500]}
    assert recs[0].raw_response.startswith("<think>") and recs[0].action_line == "Click the bar."
    assert recs[0].target_px == (100.0, 125.0) and recs[0].screen_size == (400, 250)
    assert recs[0].latency.policy is not None and recs[0].latency.parse is not None
    assert recs[0].latency.execute is not None
    assert recs[0].visual_tokens == 12 * 8  # 400x250 → smart_resize(32) 384x256 (round half to even, as HF)
    assert [r.done for r in recs] == [False, False, False, True]
    for r in recs:
        assert (out / r.screenshot_file).exists()
    with Image.open(out / recs[1].screenshot_file) as im:
        assert screen_hash(im) == screen_hash(screen(1))  # step 2 saw the screen after step 1's click
    header = load_header(out)
    assert header.instruction == "save the file" and header.profile == "qwen" and header.policy == "scripted"
    assert json.loads((out / "result.json").read_text())["status"] == "success"
    report = (out / "report.html").read_text()
    thumbs = [out / "report_files" / f"step_{r.step_num}.jpg" for r in recs]
    assert report.count("src='report_files/step_") == 4 and "data:image" not in report
    for r, thumb in zip(recs, thumbs):   # the annotated copy of the screenshot the model saw, at its size
        with Image.open(thumb) as im, Image.open(out / r.screenshot_file) as shot:
            assert im.format == "JPEG" and im.size == shot.size
    assert "h&eacute;llo" in report or "héllo" in report
    assert "&lt;b&gt;" in report and "<b>\"" not in report  # model text is escaped


def test_loop_detected_same_action_on_unchanged_screen(tmp_path):
    env = FakeEnv(static=True)
    res = run_episode(env, ScriptedPolicy([CLICK] * 10), "x", env.reset(), config=AgentConfig(loop_limit=3))
    assert res.status == "loop" and res.steps == 3
    assert len(env.steps) == 3


def test_same_action_on_a_changing_screen_is_not_a_loop():
    env = FakeEnv(static=False)
    res = run_episode(env, ScriptedPolicy([CLICK] * 5 + [DONE]), "x", env.reset(), config=AgentConfig(loop_limit=3))
    assert res.status == "success" and len(env.steps) == 6


def test_max_steps():
    env = FakeEnv()
    clicks = [tc({"action": "left_click", "coordinate": [i * 100, 100]}) for i in range(10)]
    res = run_episode(env, ScriptedPolicy(clicks), "x", env.reset(), config=AgentConfig(max_steps=4))
    assert res.status == "max_steps" and res.steps == 4 and len(env.steps) == 4


def test_unparseable_replies_are_fed_back_then_the_run_ends_as_parse_error(tmp_path):
    env = FakeEnv()

    class Recording(ScriptedPolicy):
        def __init__(self, responses):
            super().__init__(responses)
            self.seen = []

        def respond(self, messages):
            self.seen.append(messages)
            return super().respond(messages)

    policy = Recording(["I'd click it.", '<tool_call>{"name": "computer_use", "arguments": {"action": "fly"}}',
                        "still nothing"])
    res = run_episode(env, policy, "x", env.reset(), config=AgentConfig(max_parse_retries=2), out_dir=tmp_path / "r")
    assert res.status == "parse_error" and env.steps == [] and res.steps == 0
    assert "no usable action after 3 replies" in res.error
    # the second call showed the model its reply and what was wrong with it
    second = policy.seen[1]
    assert second[-2] == {"role": "assistant", "content": [{"type": "text", "text": "I'd click it."}]}
    assert "no <tool_call> block found" in second[-1]["content"][0]["text"]
    assert "unknown action 'fly'" in policy.seen[2][-1]["content"][0]["text"]
    recs = load_steps(tmp_path / "r")
    assert [r.status for r in recs] == ["parse_error"] * 3
    assert recs[0].raw_response == "I'd click it." and recs[-1].done


def test_a_parse_error_then_a_good_reply_continues():
    env = FakeEnv()
    res = run_episode(env, ScriptedPolicy(["oops", CLICK, DONE]), "x", env.reset(), config=AgentConfig())
    assert res.status == "success" and [a.action for a, _ in env.steps] == ["left_click", "terminate"]


def test_dry_run_executes_nothing_and_draws_the_action(tmp_path):
    env = FakeEnv()
    res = run_episode(env, ScriptedPolicy([CLICK, tc({"action": "type", "text": "hi"}), DONE]), "x", env.reset(),
                      config=AgentConfig(dry_run=True), out_dir=tmp_path / "dry")
    assert env.steps == []
    assert res.status == "success" and res.steps == 3
    recs = load_steps(tmp_path / "dry")
    assert [r.status for r in recs] == ["dry_run"] * 3 and not any(r.executed for r in recs)
    annotated = tmp_path / "dry" / recs[0].annotated_file
    with Image.open(annotated) as im:
        # the marker ring is drawn around the target (100, 125), radius max(8, 250 // 60) = 8
        ring = [im.getpixel((100 + dx, 125)) for dx in range(-10, 11)]
        assert any(p[0] > 200 and p[1] < 80 for p in ring)
        assert im.getpixel((100, 125)) == screen(0).getpixel((100, 125))  # centre left visible
        # the label sits on a black box; the original screen has no black pixel
        assert (0, 0, 0) in {p for _, p in im.getcolors(1 << 16)}
        assert (0, 0, 0) not in {p for _, p in screen(0).getcolors(1 << 16)}


def test_confirm_declined_action_is_not_executed_and_the_model_is_told():
    env = FakeEnv()
    asked = []

    def confirm(action, reason):
        asked.append((action.action, reason))
        return action.action != "key"

    policy = ScriptedPolicy([tc({"action": "key", "keys": ["alt", "F4"]}), CLICK, DONE])
    seen = []
    orig = policy.respond
    policy.respond = lambda m: (seen.append(m), orig(m))[1]
    res = run_episode(env, policy, "x", env.reset(), config=AgentConfig(confirm=confirm))
    assert res.status == "success"
    assert [a.action for a, _ in env.steps] == ["left_click", "terminate"]  # the chord never ran
    assert asked[0] == ("key", "key chord alt+F4 (closes the window)") and asked[1] == ("left_click", "")
    texts = [c["text"] for c in seen[1][-1]["content"] if c["type"] == "text"]
    assert any("The user declined this action" in t for t in texts)


def test_terminal_confirm_risky_only_asks_for_risky_actions():
    out = io.StringIO()
    confirm = terminal_confirm("risky", stream_in=io.StringIO("n\n"), stream_out=out)
    assert confirm(Action(action="left_click", coordinate=(1, 1)), "") is True and out.getvalue() == ""
    assert confirm(Action(action="key", keys=["ctrl", "alt", "delete"]), "x") is False
    assert "execute key ctrl+alt+delete" in out.getvalue()
    confirm_all = terminal_confirm("all", stream_in=io.StringIO("yes\n"), stream_out=io.StringIO())
    assert confirm_all(Action(action="left_click", coordinate=(1, 1)), "") is True
    with pytest.raises(ValueError):
        terminal_confirm("sometimes")


@pytest.mark.parametrize("keys, risky", [
    (["ctrl", "alt", "del"], True), (["Control", "Alt", "Delete"], True), (["alt", "f4"], True),
    (["super", "l"], True), (["cmd", "q"], True), (["ctrl", "w"], True), (["ctrl", "c"], False), (["enter"], False),
])
def test_risky_key_chords(keys, risky):
    assert bool(risk_reason(Action(action="key", keys=keys))) is risky


def test_typing_into_a_password_field_asks():
    env = FakeEnv()
    env.executor.password = True
    asked = []
    res = run_episode(env, ScriptedPolicy([tc({"action": "type", "text": "hunter2"}), DONE]), "x", env.reset(),
                      config=AgentConfig(confirm=lambda a, r: asked.append(r) or False))
    assert asked == ["types into a password field"]
    assert [a.action for a, _ in env.steps] == ["terminate"]
    assert res.status == "success"


def test_policy_error_ends_the_run_cleanly(tmp_path):
    class Down:
        kind = "openai"

        def respond(self, messages):
            raise PolicyError("cannot reach the model server at http://x/v1/chat/completions after 3 tries")

    env = FakeEnv()
    res = run_episode(env, Down(), "x", env.reset(), config=AgentConfig(), out_dir=tmp_path / "r")
    assert res.status == "error" and res.error.startswith("cannot reach the model server")
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "error"
    assert (tmp_path / "r" / "report.html").exists()


def test_answer_ends_the_run_with_the_answer():
    env = FakeEnv()
    res = run_episode(env, ScriptedPolicy([tc({"action": "answer", "text": "Lisbon"})]), "x", env.reset(),
                      config=AgentConfig())
    assert res.status == "answered" and res.answer == "Lisbon" and env.steps[-1][0].action == "answer"


def test_exhausted_script_terminates_as_failure():
    env = FakeEnv()
    res = run_episode(env, ScriptedPolicy([CLICK]), "x", env.reset(), config=AgentConfig())
    assert res.status == "failure" and env.steps[-1][0] == Action(action="terminate", status="failure")


def test_killed_run_stays_readable_and_replays(tmp_path):
    env = FakeEnv()
    out = tmp_path / "run"
    script = [CLICK, tc({"action": "type", "text": "abc"}), DONE]
    run_episode(env, ScriptedPolicy(script), "x", env.reset(), config=AgentConfig(), out_dir=out)
    # simulate a crash mid-write: a torn last line
    with open(out / "traj.jsonl", "a") as f:
        f.write('{"step_num": 4, "action_timestamp": "2026')
    recs = load_steps(out)
    assert len(recs) == 3
    replayed = FakeEnv()
    res = run_episode(replayed, ScriptedPolicy.from_trajectory(out), "x", replayed.reset(), config=AgentConfig())
    assert res.status == "success"
    assert [(a, t) for a, t in replayed.steps] == [(a, t) for a, t in env.steps]


def test_out_dir_with_a_run_is_refused(tmp_path):
    env = FakeEnv()
    run_episode(env, ScriptedPolicy([DONE]), "x", env.reset(), config=AgentConfig(), out_dir=tmp_path)
    with pytest.raises(FileExistsError, match="already holds a run"):
        run_episode(env, ScriptedPolicy([DONE]), "x", env.reset(), config=AgentConfig(), out_dir=tmp_path)


def test_config_validation():
    with pytest.raises(ValueError, match="prompt profile"):
        AgentConfig(prompt_profile="nope")
    with pytest.raises(ValueError, match="max steps"):
        AgentConfig(max_steps=0)


def test_osworld_profile_with_divisor_999():
    env = FakeEnv(size=(1920, 1080))
    run_episode(env, ScriptedPolicy([tc({"action": "left_click", "coordinate": [999, 500]}), DONE]), "x",
                env.reset(), config=AgentConfig(prompt_profile="osworld", coord_divisor=999))
    x, y = env.steps[0][1]
    assert int(x) == int(999 * 1920 / 999) - 1 and int(y) == int(500 * 1080 / 999)


def test_all_calls_of_a_reply_run_in_order_are_recorded_and_replay(tmp_path):
    env = FakeEnv()
    three = ("Action: Fill the field.\n" + tc({"action": "left_click", "coordinate": [250, 500]})
             + "\n" + tc({"action": "type", "text": "hi"}) + "\n" + tc({"action": "key", "keys": ["enter"]}))
    out = tmp_path / "run"
    res = run_episode(env, ScriptedPolicy([three, DONE]), "x", env.reset(), config=AgentConfig(), out_dir=out)
    assert res.status == "success" and res.steps == 4
    assert [a.action for a, _ in env.steps] == ["left_click", "type", "key", "terminate"]
    raw = [json.loads(line) for line in (out / "traj.jsonl").read_text().splitlines()]
    # one OSWorld line per executed call; the calls of one reply share its step_num, response and screenshot
    assert [(r["step_num"], r["call_index"], r["action"]["action"]) for r in raw] == [
        (1, 0, "left_click"), (1, 1, "type"), (1, 2, "key"), (2, 0, "terminate")]
    assert all(OSWORLD_KEYS <= set(r) for r in raw)
    assert len({r["response"] for r in raw[:3]}) == 1 and len({r["screenshot_file"] for r in raw[:3]}) == 1
    assert raw[0]["calls_in_reply"] == 3 and raw[0]["target_px"] == [100.0, 125.0]
    # the model's next turn sees the reply once
    replayed = FakeEnv()
    policy = ScriptedPolicy.from_trajectory(out)
    assert policy.responses == [three, DONE]
    again = run_episode(replayed, policy, "x", replayed.reset(), config=AgentConfig(), out_dir=tmp_path / "replay")
    assert again.status == "success" and replayed.steps == env.steps
    assert [(r.step_num, r.call_index) for r in load_steps(tmp_path / "replay")] == [(1, 0), (1, 1), (1, 2), (2, 0)]


def test_a_final_call_ends_the_reply_and_an_unreadable_one_is_reported():
    env = FakeEnv()
    reply = tc({"action": "answer", "text": "42"}) + tc({"action": "left_click", "coordinate": [1, 1]})
    res = run_episode(env, ScriptedPolicy([reply]), "x", env.reset(), config=AgentConfig())
    assert res.status == "answered" and [a.action for a, _ in env.steps] == ["answer"]

    env = FakeEnv()
    policy = ScriptedPolicy([tc({"action": "left_click", "coordinate": [1, 1]}) + tc({"action": "fly"}), DONE])
    run_episode(env, policy, "x", env.reset(), config=AgentConfig())
    assert [a.action for a, _ in env.steps] == ["left_click", "terminate"]
    told = [c["text"] for c in policy.last_messages[-1]["content"] if c["type"] == "text"]
    assert any("The rest of your last reply was not executed: unknown action 'fly'" in t for t in told)


def test_declining_one_call_skips_the_rest_of_the_reply():
    env = FakeEnv()
    reply = tc({"action": "key", "keys": ["alt", "F4"]}) + tc({"action": "left_click", "coordinate": [1, 1]})
    res = run_episode(env, ScriptedPolicy([reply, DONE]), "x", env.reset(),
                      config=AgentConfig(confirm=lambda a, r: a.action != "key"))
    assert res.status == "success" and [a.action for a, _ in env.steps] == ["terminate"]


def test_lenient_parse_option_reaches_the_parser():
    env = FakeEnv()
    alias = tc({"action": "click", "coordinate": [250, 500]})
    strict = run_episode(env, ScriptedPolicy([alias] * 3), "x", env.reset(), config=AgentConfig(max_parse_retries=2))
    assert strict.status == "parse_error" and env.steps == []
    res = run_episode(env, ScriptedPolicy([alias, DONE]), "x", env.reset(), config=AgentConfig(lenient_parse=True))
    assert res.status == "success" and env.steps[0][0].action == "left_click"


# ---------------------------------------------------------------- Python API

class GroundingPolicy:
    kind = "scripted"

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def respond(self, messages):
        self.seen.append(messages)
        return PolicyReply(self.replies.pop(0))


def test_api_locate_returns_screen_coordinates_on_hidpi_with_offset():
    # 800x500 screenshot of a 400x250 logical monitor placed at x=-400
    env = FakeEnv(size=(800, 500), geometry=ScreenGeometry(800, 500, 400, 250, left=-400, top=0))
    policy = GroundingPolicy(["no idea", tc({"action": "left_click", "coordinate": [500, 200]})])
    agent = Agent(env=env, policy=policy)
    assert agent.locate("the Submit button") == (-200, 50)
    first = policy.seen[0]
    assert first[1]["content"][1]["text"] == "Click on the Submit button."
    assert "Your last reply could not be executed" in policy.seen[1][-1]["content"][0]["text"]
    # explicit click at that point: the environment gets the screenshot pixel back
    agent.click(-200, 50)
    action, target = env.steps[-1]
    assert target == (400.0, 100.0) and action.action == "left_click" and action.coordinate == (500.0, 200.0)
    agent.key("ctrl+a")
    agent.type("hello")
    agent.scroll(-3, -200, 50)
    assert [a.action for a, _ in env.steps] == ["left_click", "key", "type", "scroll"]
    assert env.steps[1][0].keys == ["ctrl", "a"] and env.steps[3][1] == (400.0, 100.0)
    agent.close()
    assert env.closed


def test_api_locate_without_a_point_is_a_clear_error():
    env = FakeEnv()
    agent = Agent(env=env, policy=GroundingPolicy([DONE, DONE, DONE]))
    with pytest.raises(ValueError, match="did not point at 'the logo'"):
        agent.locate("the logo")


def test_api_step_keeps_history_and_run_records(tmp_path):
    env = FakeEnv()
    policy = GroundingPolicy([CLICK, tc({"action": "left_click", "coordinate": [700, 500]}), DONE])
    agent = Agent(env=env, policy=policy)
    assert agent.step("press both").status == "max_steps"  # one action done, task goes on
    assert agent.step("press both").status == "max_steps"
    second = policy.seen[1]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    res = agent.run("finish", out_dir=tmp_path / "api")
    assert res.status == "success" and (tmp_path / "api" / "report.html").exists()
    assert len(env.steps) == 3


def test_api_without_a_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(ValueError, match=r"\$DISPLAY, which is not set"):
        Agent()
