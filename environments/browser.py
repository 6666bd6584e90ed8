"""A sandboxed headless browser as an agent environment.

The browser is Debian's chromium driven by `tools.browser.BrowserExecutor`; the page's viewport is the
screen the agent sees. Tasks in OSWorld's format run here when every setup step makes sense in a bare
browser (`chrome_open_tabs` → navigate, `sleep`), and are scored by the harness's `evaluate_task`
against a `Controller` whose home is a private temp folder. The bundled sites (`environments.sites`)
are started on demand for tasks that name them through the `{SITE}` / `{SITE_STATE}` placeholders.

As in DesktopEnvironment, `reset(task)` never raises for a task that cannot run here: the reason goes
to `skip_reason` (and the observation's `extra["skipped"]`), a failed setup step to `setup_error`,
and `evaluate()` reports them as skipped / error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from agent.actions import Action, ActionOutcome
from environments.base import EvalResult, Observation
from environments.controller import Controller
from environments.evaluate import as_task, evaluate_environment, evaluation_blocker
from environments.setup import offline_blocker
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
        self.home = self._root / "home"
        self.home.mkdir()
        self._sites = sites
        self._own_sites: SiteServer | None = None
        self.task: Task | None = None
        self.skip_reason: str | None = None
        self.setup_error: str | None = None
        self.action_history: list[Action] = []
        # Getters and metrics read files through a Controller; here it runs commands in the private home.
        self.controller = Controller(
            env={**os.environ, "HOME": str(self.home)}, home=self.home, cache_dir=self._root / "cache",
            display=os.environ.get("DISPLAY", ""), screen_size=tuple(viewport), marker=uuid.uuid4().hex,
            chrome_port=0)
        try:
            self.executor = BrowserExecutor.launch(headless=headless, viewport=tuple(viewport),
                                                   allow_domains=allow_domains, deny_domains=deny_domains)
        except BaseException:
            shutil.rmtree(self._root, ignore_errors=True)
            raise

    # -- Environment protocol -------------------------------------------------------------------------

    def reset(self, task: Task | dict | str | Path | None = None) -> Observation:
        self.action_history = []
        self.skip_reason = self.setup_error = None
        shutil.rmtree(self.controller.cache_dir, ignore_errors=True)
        page = self.executor.page
        page.context.clear_cookies()
        page.goto("about:blank")
        self.task = as_task(task) if task is not None else None
        self.controller.task_id = self.task.id if self.task else ""
        extra: dict = {}
        if self.task is None:
            if self.start_url:
                self.executor.goto(self.start_url)
            return self.observe(extra)
        if uses_sites(self.task.model_dump(mode="json")):
            self.task = start_on_sites(self.task, self.sites)
        extra.update(task_id=self.task.id, instruction=self.task.instruction)
        self.skip_reason = (self._desktop_steps() or offline_blocker(self.task, self.controller)
                            or evaluation_blocker(self.task, self.controller))
        if self.skip_reason is None:
            try:
                self._run_steps(self.task.config)
            except Exception as e:  # noqa: BLE001 - OSWorld aborts setup on any failing step
                self.setup_error = f"{type(e).__name__}: {e}"
                extra["setup_error"] = self.setup_error
        else:
            extra["skipped"] = self.skip_reason
        return self.observe(extra)

    def step(self, action: Action, target: tuple[float, float] | None = None) -> tuple[Observation, ActionOutcome]:
        self.action_history.append(action)
        outcome = self.executor.execute(action, target)
        return self.observe(), outcome

    def evaluate(self) -> EvalResult:
        return evaluate_environment(self.task, self.controller, self.action_history, self.skip_reason,
                                    self.setup_error)

    def close(self) -> None:
        self.executor.close()
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
            self._own_sites = self._sites = SiteServer(self._root / "sites")
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

    def _run_steps(self, steps) -> None:
        """OSWorld setup steps in a one-page browser: chrome_open_tabs navigates (the last URL stays shown).

        The harness's chrome_open_tabs attaches over CDP from a second Playwright; that cannot share a
        thread with this executor's Playwright, so the browser steps are carried out here directly.
        """
        for step in steps:
            if step.type == "chrome_open_tabs":
                for url in step.parameters.get("urls_to_open") or []:
                    self.executor.goto(url)
            elif step.type == "sleep":
                time.sleep(float(step.parameters.get("seconds", 0)))

