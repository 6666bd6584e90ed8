"""Progress of long work on the command line: loading weights, generating a step, an eval's workers.

On a terminal, rich draws a live line (or bar / table) on stderr that updates in place. Anywhere else (CI logs, a file,
a pipe) the same facts come as plain lines at a steady pace, so a log shows the work is alive without flooding it.
The displays only read numbers they are given; they never import the model or the environments.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

PLAIN_INTERVAL_S = 15.0   # a plain status line at most this often (not a terminal)


def _is_terminal(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _rate(tokens: int, seconds: float) -> str:
    return f", {tokens / seconds:.1f} tok/s" if tokens and seconds > 0 else ""


class LoadProgress:
    """`progress(done, total)` callback for weight loading: a bar on a terminal, a line every 10% elsewhere."""

    def __init__(self, what: str = "weights", stream: TextIO | None = None):
        self.what = what
        self.stream = stream or sys.stderr
        self._bar: Progress | None = None
        self._task = None
        self._t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        if _is_terminal(self.stream):
            if self._bar is None:
                self._bar = Progress(TextColumn(f"  {self.what}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=Console(file=self.stream), transient=False)
                self._bar.start()
                self._task = self._bar.add_task(self.what, total=total)
            self._bar.update(self._task, completed=done)
            if done >= total:
                self._bar.stop()
                self._bar = None
        elif done == total or done * 10 // total != (done - 1) * 10 // total:
            print(f"  {self.what} {done}/{total} ({done * 100 // total}%, {time.perf_counter() - self._t0:.0f} s)",
                  file=self.stream, flush=True)


class StepProgress:
    """What the agent is doing while a policy answers: `step 3 · generating · 41 tokens, 6.2 tok/s · 12 s`.

    `start(step)` before the policy call, `tokens(n)` as tokens arrive (policies that stream them), `stop()` after.
    """

    def __init__(self, stream: TextIO | None = None, interval_s: float = PLAIN_INTERVAL_S):
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self._live: Live | None = None
        self._timer: threading.Thread | None = None
        self._stopped = threading.Event()
        self._step: int | None = None
        self._tokens = 0
        self._t0 = 0.0

    def line(self) -> str:
        elapsed = time.perf_counter() - self._t0
        tokens = f" · {self._tokens} tokens{_rate(self._tokens, elapsed)}" if self._tokens else ""
        step = f"step {self._step} · " if self._step else ""
        return f"{step}generating{tokens} · {elapsed:.0f} s"

    def start(self, step: int | None = None) -> None:
        self._step, self._tokens, self._t0 = step, 0, time.perf_counter()
        self._stopped.clear()
        if _is_terminal(self.stream):
            self._live = Live(self._renderable(), console=Console(file=self.stream), refresh_per_second=8,
                              transient=True, get_renderable=self._renderable)
            self._live.start()
        else:
            self._timer = threading.Thread(target=self._plain_lines, daemon=True)
            self._timer.start()

    def tokens(self, n: int) -> None:
        self._tokens = n

    def stop(self) -> None:
        self._stopped.set()
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._timer is not None:
            self._timer.join()
            self._timer = None

    def _renderable(self):
        return Spinner("dots", Text(self.line()))

    def _plain_lines(self) -> None:
        while not self._stopped.wait(self.interval_s):
            print(f"  ... {self.line()}", file=self.stream, flush=True)


class WithProgress:
    """A policy whose calls show on a `StepProgress`; everything else is the wrapped policy's."""

    def __init__(self, policy, progress: StepProgress):
        self.policy = policy
        self.progress = progress
        self._calls = 0
        if hasattr(policy, "on_token"):
            policy.on_token = progress.tokens

    def respond(self, messages: list[dict]):
        self._calls += 1
        self.progress.start(self._calls)
        try:
            return self.policy.respond(messages)
        finally:
            self.progress.stop()

    def __getattr__(self, name: str):
        return getattr(self.policy, name)


class EvalProgress:
    """An eval's live view: the tasks done and, per worker, the task and step it is on.

    Terminal: a table redrawn in place. Elsewhere: the caller's per-task lines, plus one line about the running tasks
    every `interval_s`."""

    def __init__(self, total: int, done: int, log: Callable[[str], None], stream: TextIO | None = None,
                 interval_s: float = 60.0):
        self.total, self.done, self.log = total, done, log
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.running: dict[int, tuple[str, int, float]] = {}   # worker -> (task, step, started)
        self._last_plain = time.perf_counter()
        self._live: Live | None = None
        if _is_terminal(self.stream):
            self._live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=2,
                              transient=True, get_renderable=self._table)
            self._live.start()

    def step(self, worker: int, task: str, step: int) -> None:
        started = self.running.get(worker, (task, 0, time.perf_counter()))
        self.running[worker] = (task, step, started[2] if started[0] == task else time.perf_counter())
        self._plain_status()

    def task_done(self, worker: int | None, line: str) -> None:
        self.done += 1
        self.running.pop(worker, None)
        if self._live is not None:
            self._live.console.print(line)
        else:
            self.log(line)

    def tick(self) -> None:
        self._plain_status()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _running_text(self) -> list[tuple[int, str, int, float]]:
        now = time.perf_counter()
        return [(w, task, step, now - t0) for w, (task, step, t0) in sorted(self.running.items())]

    def _plain_status(self) -> None:
        if self._live is not None or time.perf_counter() - self._last_plain < self.interval_s or not self.running:
            return
        self._last_plain = time.perf_counter()
        parts = [f"worker {w}: {task} step {step} ({s:.0f} s)" for w, task, step, s in self._running_text()]
        self.log(f"[{self.done}/{self.total} done] running: " + "; ".join(parts))

    def _table(self) -> Table:
        table = Table(title=f"{self.done}/{self.total} tasks done", title_justify="left", box=None, padding=(0, 2))
        for name in ("worker", "task", "step", "time"):
            table.add_column(name)
        for w, task, step, s in self._running_text():
            table.add_row(str(w), task, str(step), f"{s:.0f} s")
        return table
