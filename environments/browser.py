"""A sandboxed headless browser as an agent environment.

The browser is Debian's chromium driven by `tools.browser.BrowserExecutor`; the page's viewport is the
screen the agent sees. Tasks in OSWorld's format run here when every setup step makes sense in a bare
browser (`chrome_open_tabs` → navigate, `sleep`); the bundled sites (`environments.sites`) are started
on demand for tasks that name them through the `{SITE}` / `{SITE_STATE}` placeholders.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from agent.actions import Action, ActionOutcome
from environments.base import EvalResult, Observation
from environments.sites import SiteServer, fill_site_placeholders, uses_sites

# Setup steps a bare browser can carry out; a task needing any other runs in DesktopEnvironment.
BROWSER_STEP_TYPES = frozenset({"chrome_open_tabs", "sleep"})


def task_json(task) -> dict:
    """A task as its OSWorld JSON dict, whether given as a dict or as a loaded pydantic Task."""
    if isinstance(task, dict):
        return task
    return task.model_dump(mode="json", by_alias=True, exclude_none=True)


def runs_in_browser(task) -> bool:
    """True for tasks whose setup and postconfig are browser-only and which open a page to start from."""
    t = task_json(task)
    steps = list(t.get("config") or []) + list((t.get("evaluator") or {}).get("postconfig") or [])
    types = {s.get("type") for s in steps}
    return "chrome_open_tabs" in types and types <= BROWSER_STEP_TYPES


class BrowserEnvironment:
    """One headless chromium page; implements environments.base.Environment."""

    def __init__(self, start_url: str | None = None, headless: bool = True, viewport=(1280, 800),
                 allow_domains=None, deny_domains=None, sites: SiteServer | None = None):
        from tools.browser import BrowserExecutor

        self.start_url = start_url
        self.executor = BrowserExecutor.launch(headless=headless, viewport=tuple(viewport),
                                               allow_domains=allow_domains, deny_domains=deny_domains)
        self._sites = sites
        self._own_sites: SiteServer | None = None
        # Files the evaluators may read when a task has no bundled site (OSWorld's "home" of the task).
        self._scratch = tempfile.TemporaryDirectory(prefix="qvl-browser-env-")
        self.home = Path(self._scratch.name)
        self.task: dict | None = None
        self.action_history: list[Action] = []

    # -- Environment protocol -------------------------------------------------------------------------

    def reset(self, task=None) -> Observation:
        self.action_history = []
        self.task = None
        page = self.executor.page
        page.context.clear_cookies()
        page.goto("about:blank")
        if task is None:
            if self.start_url:
                self.executor.goto(self.start_url)
            return self.observe()
        spec = task_json(task)
        if uses_sites(spec):
            self.sites.reset_state()
            spec = fill_site_placeholders(spec, self.sites)
        self.task = spec
        self.run_steps(spec.get("config") or [])
        return self.observe()

    def step(self, action: Action, target: tuple[float, float] | None = None) -> tuple[Observation, ActionOutcome]:
        self.action_history.append(action)
        outcome = self.executor.execute(action, target)
        return self.observe(), outcome

    def evaluate(self) -> EvalResult:
        if self.task is None:
            return EvalResult(status="skipped", reason="no task was reset into this environment")
        from environments.evaluate import evaluate

        return evaluate(self, self.task)

    def close(self) -> None:
        self.executor.close()
        if self._own_sites is not None:
            self._own_sites.close()
            self._own_sites = None
        self._scratch.cleanup()

    # -- helpers --------------------------------------------------------------------------------------

    @property
    def sites(self) -> SiteServer:
        """The bundled sites this environment's tasks use: the one given, else a private one started now."""
        if self._sites is None:
            self._own_sites = self._sites = SiteServer(self.home / "sites")
        return self._sites

    def observe(self) -> Observation:
        page = self.executor.page
        try:  # a click may have started a navigation; let it settle so the screenshot shows the result
            page.wait_for_load_state("load", timeout=5000)
        except Exception:  # noqa: BLE001 - a slow page is still observable
            pass
        return Observation(screenshot=self.executor.screenshot(), url=page.url)

    def run_steps(self, steps: list[dict]) -> None:
        """OSWorld setup steps in a one-page browser: chrome_open_tabs navigates (the last URL stays shown)."""
        for step in steps:
            kind, params = step.get("type"), step.get("parameters") or {}
            if kind == "chrome_open_tabs":
                for url in params.get("urls_to_open") or []:
                    self.executor.goto(url)
            elif kind == "sleep":
                time.sleep(float(params.get("seconds", 0)))
            else:
                raise ValueError(f"setup step '{kind}' needs a desktop; run this task in DesktopEnvironment")
