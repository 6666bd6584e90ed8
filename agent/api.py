"""Python API for scripted desktop automation with Qwen3-VL in the loop.

    from agent.api import Agent

    with Agent() as agent:                       # the desktop in $DISPLAY, embedded Qwen3-VL-2B
        x, y = agent.locate("the Firefox icon")  # model-grounded point, in screen coordinates
        agent.double_click(x, y)                 # explicit actions
        agent.type("qwen3-vl\\n")
        agent.key("ctrl", "l")
        result = agent.run("open the first search result")   # a whole episode
        agent.step("close the cookie banner")    # or one model-chosen action at a time

Points are in the screen's input coordinates (what `locate` returns and `click` takes); on a plain
single-monitor display these equal screenshot pixels. The model is loaded on first use, so a script that
only uses explicit actions never loads one.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from agent import coords, prompts
from agent.actions import Action, ActionOutcome
from agent.history import History
from agent.loop import DEFAULT_MAX_STEPS, AgentConfig, EpisodeResult, run_episode
from agent.parsing import parse_response
from agent.policies import DEFAULT_MODEL, Policy
from tools.keys import parse_chord


class Agent:
    """An environment (default: the live desktop in ``$DISPLAY``) plus a policy, driven from Python."""

    def __init__(self, env=None, policy: Policy | None = None, *, model: str | None = None,
                 base_url: str | None = None, api_key: str | None = None, profile: str = "qwen",
                 coord_divisor: float | None = None, display: str | None = None, max_parse_retries: int = 2):
        if env is None:
            from environments.desktop import DesktopEnvironment

            display = display or os.environ.get("DISPLAY")
            if not display:
                raise ValueError("Agent() drives the X display in $DISPLAY, which is not set; pass display=':0' "
                                 "or an environment")
            env = DesktopEnvironment(display=display)
        self.env = env
        self._policy = policy
        self._policy_args = (model, base_url, api_key)
        self.config = AgentConfig(prompt_profile=profile, coord_divisor=coord_divisor,
                                  max_parse_retries=max_parse_retries)
        self._obs = None
        self._history: History | None = None

    # ------------------------------------------------------------ plumbing

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            model, base_url, api_key = self._policy_args
            if base_url:
                from agent.policies import OpenAIPolicy

                self._policy = OpenAIPolicy(base_url, model or "", api_key or os.environ.get("OPENAI_API_KEY"))
            else:
                from agent.policies import EmbeddedPolicy

                self._policy = EmbeddedPolicy(model or DEFAULT_MODEL)
        return self._policy

    def observe(self):
        """The current observation (the environment is reset on first use)."""
        if self._obs is None:
            self._obs = self.env.reset()
        else:
            from environments.base import Observation

            self._obs = Observation(screenshot=self.env.executor.screenshot())
        return self._obs

    def screenshot(self) -> Image.Image:
        return self.observe().screenshot

    def _to_shot(self, x: float, y: float) -> tuple[float, float]:
        g = self.env.executor.geometry
        return ((x - g.left) * g.shot_width / g.input_width, (y - g.top) * g.shot_height / g.input_height)

    def _act(self, action_name: str, point: tuple[float, float] | None = None, **fields) -> ActionOutcome:
        shot = self.screenshot()
        target = None
        if point is not None:
            target = self._to_shot(*point)
            fields["coordinate"] = coords.to_grid(target, shot.size, self.config.coord_divisor)
        _, outcome = self.env.step(Action(action=action_name, **fields), target)
        if not outcome.ok:
            raise RuntimeError(f"{action_name} failed: {outcome.error}")
        return outcome

    # ------------------------------------------------------------ explicit actions

    def click(self, x: float, y: float) -> ActionOutcome:
        return self._act("left_click", (x, y))

    def double_click(self, x: float, y: float) -> ActionOutcome:
        return self._act("double_click", (x, y))

    def triple_click(self, x: float, y: float) -> ActionOutcome:
        return self._act("triple_click", (x, y))

    def right_click(self, x: float, y: float) -> ActionOutcome:
        return self._act("right_click", (x, y))

    def move(self, x: float, y: float) -> ActionOutcome:
        return self._act("mouse_move", (x, y))

    def drag_to(self, x: float, y: float) -> ActionOutcome:
        """Drag from the current pointer position to (x, y)."""
        return self._act("left_click_drag", (x, y))

    def type(self, text: str) -> ActionOutcome:
        return self._act("type", text=text)

    def key(self, *keys: str) -> ActionOutcome:
        """Press a chord: ``key("ctrl", "c")`` or ``key("ctrl+c")``; names are checked and made canonical here."""
        return self._act("key", keys=parse_chord(list(keys)))

    def scroll(self, pixels: float, x: float | None = None, y: float | None = None) -> ActionOutcome:
        """Wheel clicks, positive = up; at (x, y) when given."""
        return self._act("scroll", (x, y) if x is not None and y is not None else None, pixels=pixels)

    def wait(self, seconds: float) -> ActionOutcome:
        return self._act("wait", time=seconds)

    # ------------------------------------------------------------ model-driven

    def locate(self, description: str) -> tuple[int, int]:
        """Ground a description ("the Submit button") to a point in screen coordinates."""
        if not description.strip():
            raise ValueError("locate() needs a description of the element")
        shot = self.screenshot()
        messages = [prompts.system_message(self.config.prompt_profile),
                    {"role": "user", "content": [{"type": "image", "image": shot},
                                                 {"type": "text", "text": prompts.grounding_text(description)}]}]
        last = ""
        for _ in range(self.config.max_parse_retries + 1):
            reply = self.policy.respond(messages)
            parsed = parse_response(reply.text)
            a = parsed.action
            if a is not None and a.coordinate is not None:
                px = coords.to_pixels(a.coordinate, shot.size, self.config.coord_divisor)
                return self.env.executor.geometry.to_input(*px)
            last = parsed.error or f"the reply's {a.action} action has no coordinate"
            messages = messages + [
                {"role": "assistant", "content": [{"type": "text", "text": parsed.text or reply.text}]},
                {"role": "user", "content": [{"type": "text", "text": prompts.parse_error_feedback(
                    last + "; answer with an action that has a coordinate")}]}]
        raise ValueError(f"the model did not point at {description!r}: {last}")

    def step(self, instruction: str) -> EpisodeResult:
        """One model-chosen action towards ``instruction``; history carries over while it stays the same.

        Returns status "max_steps" when the action ran and the task goes on, else the final status."""
        if self._history is None or self._history.instruction != instruction:
            self._history = History(instruction, self.config.prompt_profile, self.config.history_images)
        cfg = AgentConfig(**{**self.config.__dict__, "max_steps": 1})
        return run_episode(self.env, self.policy, instruction, self.observe(), config=cfg, history=self._history)

    def run(self, instruction: str, max_steps: int = DEFAULT_MAX_STEPS, out_dir: Path | str | None = None,
            **config) -> EpisodeResult:
        """A whole episode; recorded to ``out_dir`` (traj.jsonl, screenshots, report.html) when given."""
        cfg = AgentConfig(**{**self.config.__dict__, "max_steps": max_steps, **config})
        self._history = None
        return run_episode(self.env, self.policy, instruction, self.observe(), config=cfg,
                           out_dir=Path(out_dir) if out_dir is not None else None)

    def close(self) -> None:
        self.env.close()
        if hasattr(self._policy, "close"):
            self._policy.close()

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
