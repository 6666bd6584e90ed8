"""Progress shown while long work runs: plain periodic lines when stderr is not a terminal (CI logs, pipes), with the
token count and rate a streaming policy reports; weights loading as a line every 10%; an eval's running tasks."""

from __future__ import annotations

import io
import re
import time

from agent.policies import PolicyReply
from agent.progress import EvalProgress, LoadProgress, StepProgress, WithProgress


class SlowStreamingPolicy:
    kind = "slow"

    def __init__(self):
        self.on_token = None

    def respond(self, messages):
        for n in range(1, 6):
            time.sleep(0.1)
            self.on_token(n)
        return PolicyReply("done")


def test_step_progress_prints_plain_lines_with_tokens_while_the_policy_works():
    stream = io.StringIO()
    policy = WithProgress(SlowStreamingPolicy(), StepProgress(stream=stream, interval_s=0.12))
    assert policy.respond([]).text == "done" and policy.kind == "slow"
    assert policy.respond([]).text == "done"
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4, lines                               # ~4 lines per 0.5 s call
    assert all(re.fullmatch(r"  \.\.\. step [12] · generating( · \d tokens, [\d.]+ tok/s)? · \d+ s", l) for l in lines)
    assert any(l.startswith("  ... step 2 ") for l in lines) and any(" tokens, " in l for l in lines)
    n = len(lines)
    time.sleep(0.3)
    assert len(stream.getvalue().splitlines()) == n             # nothing more once the policy has answered


def test_load_progress_is_a_line_every_ten_percent_off_a_terminal():
    stream = io.StringIO()
    progress = LoadProgress(stream=stream)
    for done in range(1, 201):
        progress(done, 200)
    lines = stream.getvalue().splitlines()
    assert [int(re.search(r"\((\d+)%", l).group(1)) for l in lines] == list(range(10, 101, 10))
    assert lines[-1].startswith("  weights 200/200 (100%")


def test_eval_progress_names_each_workers_task_and_step():
    logged: list[str] = []
    progress = EvalProgress(total=3, done=1, log=logged.append, stream=io.StringIO(), interval_s=0.0)
    progress.step(1, "os/a", 0)
    progress.step(2, "flights/b", 4)
    assert logged[-1].startswith("[1/3 done] running: worker 1: os/a step 0 (") and "worker 2: flights/b step 4" in logged[-1]
    progress.task_done(1, "[2/3] os/a: score 1.00")
    assert logged[-1] == "[2/3] os/a: score 1.00" and progress.done == 2
    progress.tick()
    assert logged[-1].startswith("[2/3 done] running: worker 2: flights/b step 4 (")
    progress.close()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place_and_cleared():
    stream = FakeTerminal()
    policy = WithProgress(SlowStreamingPolicy(), StepProgress(stream=stream))
    assert policy.respond([]).text == "done"
    drawn = stream.getvalue()
    assert "step 1 · generating" in drawn and "5 tokens" in drawn and "\x1b[" in drawn   # cursor control codes
    load = LoadProgress(stream=FakeTerminal())
    for done in range(1, 11):
        load(done, 10)
    assert "10/10" in load.stream.getvalue()
