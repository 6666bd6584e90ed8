"""A sandboxed headless browser as an agent environment.

The browser is Debian's chromium driven by `tools.browser.BrowserExecutor`; the page's viewport is the
screen the agent sees. Its profile is the sandbox home's `~/.config/google-chrome` and its DevTools port
is the `Controller`'s, so OSWorld tasks run here through the harness itself: setup steps
(`environments.setup`, e.g. `chrome_open_tabs` over CDP), getters and `evaluate_task`, against a
Controller on a display-less task sandbox (`environments.sandbox`) whose /home/user holds the profile. Tasks whose steps need more than a bare browser
(`BROWSER_STEP_TYPES`) run in DesktopEnvironment. The bundled sites (`environments.sites`) are started
on demand for tasks that name them through the `{SITE}` / `{SITE_STATE}` placeholders.

As in DesktopEnvironment, `reset(task)` never raises for a task that cannot run here: the reason goes
to `skip_reason` (and the observation's `extra["skipped"]`), a failed setup step to `setup_error`,
and `evaluate()` reports them as skipped / error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from agent.actions import Action, ActionOutcome
from environments.base import EvalResult, Observation
from environments.controller import Controller
from environments.evaluate import as_task, evaluate_environment, observation_extra, start_task
from environments.sandbox import Sandbox
from environments.sites import SiteServer, fill_site_placeholders, uses_sites
from environments.tasks import Task

# Setup steps a bare browser can carry out; a task needing any other runs in DesktopEnvironment.
BROWSER_STEP_TYPES = frozenset({"chrome_open_tabs", "sleep"})


def _steps(task: Task) -> list:
    return list(task.config) + list(task.evaluator.postconfig)


def runs_in_browser(task: Task) -> bool:
    """True for tasks whose setup and postconfig are browser-only and which open a page to start from."""
    types = {s.type for s in _steps(task)}
    return "chrome_open_tabs" in types and types <= BROWSER_STEP_TYPES


def start_on_sites(task: Task, server: SiteServer) -> Task:
    """`task` pointed at `server` ({SITE}, {SITE_STATE} filled in), with the server's state reset for it."""
    server.reset_state()
    filled = Task.model_validate(fill_site_placeholders(task.model_dump(mode="json"), server))
    return filled.model_copy(update={"domain": task.domain, "path": task.path})


class BrowserEnvironment:
    """One headless chromium page; implements environments.base.Environment."""

    def __init__(self, start_url: str | None = None, headless: bool = True, viewport=(1280, 800),
                 allow_domains=None, deny_domains=None, sites: SiteServer | None = None):
        from tools.browser import BrowserExecutor

        self.start_url = start_url
        self._root = Path(tempfile.mkdtemp(prefix="qvl-browser-env-"))
        self.sandbox: Sandbox | None = None
        self.executor = None
        self._sites = sites
        self._own_sites: SiteServer | None = None
        self.task: Task | None = None
        self.skip_reason: str | None = None
        self.setup_error: str | None = None
        self.action_history: list[Action] = []
        try:
            # Getters' commands run in the sandbox; chromium (on the host) keeps its profile in its home.
            # The sites' state file is read by the getters in the sandbox, at its own path.
            self._sites_dir = self._root / "sites"
            self._sites_dir.mkdir()
            shared = (sites.state_dir,) if sites is not None else (self._sites_dir,)
            self.sandbox = Sandbox(self._root / "sandbox", shared=shared)
            self.home = self.sandbox.home
            self.profile = self.home / ".config" / "google-chrome"  # where OSWorld's chrome getters look
            self.profile.mkdir(parents=True)
            # A persistent context is chromium's default context, the one a CDP client (the harness's
            # chrome_open_tabs, the tab getters) sees; port 0 lets chromium pick a free port.
            self.executor = BrowserExecutor.launch(headless=headless, viewport=tuple(viewport), cdp_port=0,
                                                   user_data_dir=self.profile, allow_domains=allow_domains,
                                                   deny_domains=deny_domains)
            chrome_port = _devtools_port(self.profile)
        except BaseException:
            self.close()
            raise
        self.controller = Controller(sandbox=self.sandbox, cache_dir=self._root / "cache",
                                     display=os.environ.get("DISPLAY", ""), screen_size=tuple(viewport),
                                     chrome_port=chrome_port)

    # -- Environment protocol -------------------------------------------------------------------------

    def reset(self, task: Task | dict | str | Path | None = None) -> Observation:
        self.action_history = []
        self.skip_reason = self.setup_error = None
        shutil.rmtree(self.controller.cache_dir, ignore_errors=True)
        self._blank_tab()
        self.task = as_task(task) if task is not None else None
        self.controller.task_id = self.task.id if self.task else ""
        if self.task is None:
            if self.start_url:
                self.executor.goto(self.start_url)
            return self.observe()
        if uses_sites(self.task.model_dump(mode="json")):
            self.task = start_on_sites(self.task, self.sites)
        self.skip_reason, self.setup_error = start_task(self.task, self.controller, blocker=self._desktop_steps())
        return self.observe(observation_extra(self.task, self.skip_reason, self.setup_error))

    def step(self, action: Action, target: tuple[float, float] | None = None) -> tuple[Observation, ActionOutcome]:
        self.action_history.append(action)
        outcome = self.executor.execute(action, target)
        return self.observe(), outcome

    def evaluate(self) -> EvalResult:
        return evaluate_environment(self.task, self.controller, self.action_history, self.skip_reason,
                                    self.setup_error)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
        if self.sandbox is not None:
            self.sandbox.close()
        if self._own_sites is not None:
            self._own_sites.close()
            self._own_sites = None
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> "BrowserEnvironment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------------------

    @property
    def sites(self) -> SiteServer:
        """The bundled sites this environment's tasks use: the one given, else a private one started now."""
        if self._sites is None:
            self._own_sites = self._sites = SiteServer(self._sites_dir)
        return self._sites

    def observe(self, extra: dict | None = None) -> Observation:
        page = self.executor.page
        try:  # a click may have started a navigation; let it settle so the screenshot shows the result
            page.wait_for_load_state("load", timeout=5000)
        except Exception:  # noqa: BLE001 - a slow page is still observable
            pass
        return Observation(screenshot=self.executor.screenshot(), url=page.url, extra=extra or {})

    def _desktop_steps(self) -> str | None:
        others = sorted({s.type for s in _steps(self.task)} - BROWSER_STEP_TYPES)
        if others:
            return f"needs a desktop: setup step(s) {', '.join(others)} (run it in DesktopEnvironment)"
        return None

    def _blank_tab(self) -> None:
        """One blank tab and no cookies: the browser a task's setup starts from."""
        page = self.executor.page
        for other in page.context.pages:
            if other is not page:
                other.close()
        page.context.clear_cookies()
        page.goto("about:blank")


def _devtools_port(profile: Path, timeout_s: float = 10.0) -> int:
    """The port chromium started with `--remote-debugging-port=0` listens on (it writes it to the profile)."""
    path = profile / "DevToolsActivePort"
    deadline = time.time() + timeout_s
    while True:
        first_line = path.read_text().split("\n", 1)[0] if path.is_file() else ""
        if first_line.isdigit():
            return int(first_line)
        if time.time() > deadline:
            raise RuntimeError(f"chromium wrote no DevTools port to {path}")
        time.sleep(0.05)
