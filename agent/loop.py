"""The agent loop: observe → messages → policy → parse → safety → execute → record.

The episode ends on ``terminate``/``answer``, at ``max_steps``, when the same action is repeated on an
unchanged screen ``loop_limit`` times, after more than ``max_parse_retries`` unusable replies in a row,
or on an error (policy unreachable, environment failure). Every action, final ones included, goes
through ``env.step`` (the environment keeps the action history OSWorld's infeasible scoring reads);
in a dry run nothing is executed and the intended action is drawn on the screenshot instead.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from PIL import Image
from pydantic import BaseModel

from agent import coords, prompts
from agent.actions import FINAL_ACTIONS, Action
from agent.history import History
from agent.parsing import parse_response
from agent.policies import Policy
from agent.report import annotate, describe, write_report
from agent.safety import risk_reason, typing_into_password
from agent.trajectory import Latency, RunHeader, StepRecord, TrajectoryWriter, elapsed

DRY_RUN_NOTE = "(dry run: the previous action was not executed)"
# Actions before an episode gives up. The bundled flight tasks take 19-29 actions and OSWorld's own runs use
# 15-100; 50 leaves a competent agent room without letting a stuck one run for ever.
DEFAULT_MAX_STEPS = 50
TRUNCATED = ("the reply was cut off at the token limit (finish_reason=length), so none of it was executed; "
             "answer briefly")


@dataclass
class AgentConfig:
    max_steps: int = DEFAULT_MAX_STEPS
    prompt_profile: str = "qwen"
    coord_divisor: float | None = None  # None: the profile's (agent.coords.PROFILE_GRID)
    lenient_parse: bool = False  # agent.parsing's lenient reading (aliases, bare {"action": ...} objects)
    history_images: int = 4
    history_window: str = "sliding"   # or "chunked" (agent/history.py): same length on average, more prefix reuse
    max_parse_retries: int = 2
    loop_limit: int = 3
    dry_run: bool = False
    # Called before every non-final action with the risk reason ("" when ordinary); False = don't execute.
    confirm: Callable[[Action, str], bool] | None = None

    @property
    def coord_floor(self) -> bool:
        """Whether grid points map to the floor pixel (OSWorld's int(x * (W / 999))) rather than the exact point."""
        return coords.PROFILE_GRID[self.prompt_profile][1]

    def __post_init__(self):
        if self.prompt_profile not in prompts.PROFILES:
            raise ValueError(f"unknown prompt profile {self.prompt_profile!r}; choose one of "
                             f"{', '.join(prompts.PROFILES)}")
        if self.coord_divisor is None:
            self.coord_divisor = coords.PROFILE_GRID[self.prompt_profile][0]
        if self.max_steps < 1:
            raise ValueError(f"max steps must be at least 1, got {self.max_steps}")
        if self.coord_divisor <= 0:
            raise ValueError(f"coordinate divisor must be positive, got {self.coord_divisor}")
        if self.loop_limit < 2:
            raise ValueError(f"loop limit must be at least 2, got {self.loop_limit}")
        if self.history_window not in ("sliding", "chunked"):
            raise ValueError(f"history window must be sliding or chunked, got {self.history_window!r}")


class EpisodeResult(BaseModel):
    status: Literal["success", "failure", "answered", "max_steps", "loop", "parse_error", "error"]
    answer: str | None = None
    steps: int = 0
    last_action: Action | None = None
    error: str | None = None


def screen_hash(image: Image.Image) -> int:
    """64-bit difference hash: equal for screens that look the same (cursor blinks and noise ignored)."""
    small = image.convert("L").resize((9, 8), Image.BILINEAR)
    px = list(small.tobytes())  # 8-bit grey: one byte per pixel, row-major
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (px[row * 9 + col] > px[row * 9 + col + 1])
    return bits


def action_key(action: Action) -> tuple:
    """An action with its point snapped to a 10-unit grid cell, so near-identical clicks compare equal."""
    point = None if action.coordinate is None else tuple(round(c / 10) for c in action.coordinate)
    keys = None if action.keys is None else tuple(k.lower() for k in action.keys)
    return (action.action, point, keys, action.text, action.pixels, action.status)


def run_episode(env, policy: Policy, instruction: str, first_obs, *, config: AgentConfig,
                out_dir: Path | None = None, on_step: Callable[[StepRecord], None] | None = None,
                header: RunHeader | None = None, history: History | None = None) -> EpisodeResult:
    """Run one task to the end. With ``out_dir``, the run is recorded there as it happens (see
    agent.trajectory) and a report.html is written at the end, also when the run is interrupted.
    ``history`` continues an earlier conversation (agent.api steps one action at a time)."""
    writer = TrajectoryWriter(out_dir) if out_dir is not None else None
    if writer:
        hdr = header or RunHeader(instruction=instruction)
        hdr = hdr.model_copy(update={
            "instruction": instruction, "profile": config.prompt_profile, "coord_divisor": config.coord_divisor,
            "history_images": config.history_images, "max_steps": config.max_steps, "dry_run": config.dry_run,
            "lenient_parse": config.lenient_parse,
            "policy": hdr.policy or getattr(policy, "kind", type(policy).__name__),
        })
        writer.write_header(hdr)

    if history is None:
        history = History(instruction, config.prompt_profile, config.history_images,
                          window=config.history_window)
    obs = first_obs
    result: EpisodeResult | None = None
    failed: list[tuple[str, str]] = []  # this step's unusable replies, shown back to the model
    recent: deque[tuple] = deque(maxlen=config.loop_limit)
    steps = 0
    turn = 0
    saved: tuple[Image.Image | None, str | None] = (None, None)  # (screenshot, its file)
    last_action: Action | None = None

    def emit(rec: StepRecord) -> None:
        if writer:
            writer.append(rec)
        if on_step:
            on_step(rec)

    try:
        while result is None:
            if steps >= config.max_steps:
                result = EpisodeResult(status="max_steps", steps=steps, last_action=last_action)
                break
            turn += 1
            shot: Image.Image = obs.screenshot
            if writer and shot is not saved[0]:  # a retry after a parse error shows the same screenshot
                saved = (shot, writer.save_screenshot(turn, shot))
            shot_file = saved[1]
            rec = StepRecord(step_num=turn, action_timestamp=_now(), action=None, response="", raw_response="",
                             screenshot_file=shot_file, screen_size=shot.size,
                             visual_tokens=coords.visual_tokens(shot.size))
            # policy
            t0 = time.perf_counter()
            try:
                reply = policy.respond(history.messages(shot, failed))
            except Exception as e:  # unreachable server, runtime failure: the run ends, cleanly
                rec.status, rec.info["error"], rec.done = "error", _err(e), True
                rec.latency = Latency(policy=elapsed(t0))
                emit(rec)
                result = EpisodeResult(status="error", steps=steps, last_action=last_action, error=_err(e))
                break
            t_policy = elapsed(t0)
            t1 = time.perf_counter()
            parsed = parse_response(reply.text, lenient=config.lenient_parse)
            t_parse = elapsed(t1)
            rec = rec.model_copy(update=dict(
                response=reply.text, raw_response=reply.text, thought=parsed.thought, action_line=parsed.action_line,
                parsed_action=parsed.action, parse_error=parsed.error, tokens_in=reply.tokens_in,
                tokens_out=reply.tokens_out, latency=Latency(policy=t_policy, parse=t_parse),
                finish_reason=reply.finish_reason, calls_in_reply=len(parsed.actions)))

            if reply.finish_reason == "length" or not parsed.actions:
                # a reply cut off at the token limit is never executed, whatever calls it seems to hold
                error = TRUNCATED if reply.finish_reason == "length" else parsed.error or ""
                failed.append((parsed.text or reply.text, prompts.parse_error_feedback(error)))
                rec = rec.model_copy(update=dict(status="parse_error", parse_error=error, parsed_action=None,
                                                 calls_in_reply=0))
                if len(failed) > config.max_parse_retries:
                    rec.done = True
                    emit(rec)
                    result = EpisodeResult(status="parse_error", steps=steps, last_action=last_action,
                                           error=f"no usable action after {len(failed)} replies: {error}")
                    break
                emit(rec)
                continue

            # Every call of the reply runs, in order, as its own trajectory line (OSWorld's runner writes one
            # traj.jsonl line per action, each with the turn's step_num and response). Coordinates refer to
            # the screenshot the model saw. A declined, final or failing call ends the reply.
            failed = []
            note = prompts.unread_calls_note(parsed.call_errors[0]) if parsed.call_errors else None
            if note:
                rec.info["unread_calls"] = parsed.call_errors[0]
            base = rec
            for index, action in enumerate(parsed.actions):
                rec = base.model_copy(deep=True, update=dict(call_index=index, parsed_action=action))
                if index:
                    rec.action_timestamp = _now()
                steps += 1
                last_action = action
                target = (coords.to_pixels(action.coordinate, shot.size, config.coord_divisor, config.coord_floor)
                          if action.coordinate is not None else None)
                rec.target_px = target
                final = action.action in FINAL_ACTIONS

                if not final and config.confirm is not None:
                    reason = risk_reason(action, action.action == "type" and typing_into_password(env))
                    if reason:
                        rec.info["risk"] = reason
                    if not config.confirm(action, reason):
                        rec.status = "declined"
                        emit(rec)
                        note = prompts.declined_feedback(describe(action))
                        break

                if config.dry_run:
                    rec.status = "dry_run"
                    if final:
                        rec.done = True
                        emit(rec)
                        result = _final_result(action, steps, None)
                        break
                    if writer:
                        rec.annotated_file = writer.save_screenshot(
                            turn, annotate(shot, action, target, "dry run: " + describe(action)),
                            f"_dryrun{'_' + str(index + 1) if index else ''}")
                    note = note or DRY_RUN_NOTE
                    if _looping(recent, shot, action, config.loop_limit):
                        rec.done = True
                        result = _loop_result(action, steps, config.loop_limit)
                    emit(rec)
                    if result is not None:
                        break
                    continue

                t2 = time.perf_counter()
                try:
                    new_obs, outcome = env.step(action, target)
                except Exception as e:
                    rec.status, rec.info["error"], rec.done = "error", _err(e), True
                    rec.latency.execute = elapsed(t2)
                    emit(rec)
                    result = EpisodeResult(status="error", steps=steps, last_action=action, error=_err(e))
                    break
                # env.step executes and observes; an environment that times its observation reports it in extra
                total = elapsed(t2)
                observe = new_obs.extra.get("observe_s")
                rec.latency.observe = observe
                rec.latency.execute = round(total - observe, 4) if observe is not None else total
                rec.executed = True
                rec.action = action.arguments()
                rec.outcome = outcome.model_dump(exclude_none=True)
                if not outcome.ok:
                    rec.info["error"] = outcome.error
                obs = new_obs
                if final or outcome.done:
                    rec.done = True
                    emit(rec)
                    result = _final_result(action, steps, outcome.answer)
                    break
                if _looping(recent, shot, action, config.loop_limit):
                    rec.done = True
                    result = _loop_result(action, steps, config.loop_limit)
                emit(rec)
                if result is not None:
                    break
            history.add(shot, parsed, note=note)
    except BaseException as e:
        result = EpisodeResult(status="error", steps=steps, last_action=last_action,
                               error="interrupted" if isinstance(e, KeyboardInterrupt) else _err(e))
        raise
    finally:
        if writer and result is not None:
            writer.write_result(result)
            write_report(writer.dir)
    return result


def _looping(recent: deque, shot: Image.Image, action: Action, limit: int) -> bool:
    recent.append((screen_hash(shot), action_key(action)))
    return len(recent) == limit and len(set(recent)) == 1


def _loop_result(action: Action, steps: int, limit: int) -> EpisodeResult:
    return EpisodeResult(status="loop", steps=steps, last_action=action,
                         error=f"the same action on an unchanged screen {limit} times")


def _final_result(action: Action, steps: int, answer: str | None) -> EpisodeResult:
    if action.action == "answer":
        return EpisodeResult(status="answered", answer=answer if answer is not None else action.text, steps=steps,
                             last_action=action)
    if action.action == "terminate":
        return EpisodeResult(status="success" if action.status == "success" else "failure", steps=steps,
                             last_action=action)
    # the environment ended the episode on an ordinary action
    return EpisodeResult(status="failure", steps=steps, last_action=action, error="the environment ended the episode")


def _err(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    return msg if isinstance(e, (ValueError, FileNotFoundError)) or type(e).__name__ == "PolicyError" else \
        f"{type(e).__name__}: {msg}"


def _now() -> str:
    from agent.trajectory import timestamp

    return timestamp()
