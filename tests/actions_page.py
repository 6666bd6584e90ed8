"""Helpers for the executor tests on tests/tools/pages/actions.html, a page that records every event it receives."""

from __future__ import annotations

from agent.actions import Action


def center(page, element_id: str) -> tuple[float, float]:
    """Element center in CSS px."""
    r = page.evaluate("(id) => window.__rect(id)", element_id)
    return r["cx"], r["cy"]


def act(ex, name: str, target=None, **fields):
    """Run one action; the Action carries the model-grid coordinate that `target` corresponds to."""
    if target is not None:
        g = ex.geometry
        fields["coordinate"] = (target[0] / g.shot_width * 1000, target[1] / g.shot_height * 1000)
    return ex.execute(Action(action=name, **fields), target)


def mouse_log(page, type_: str | None = None) -> list[dict]:
    """The page's recorded mouse events, optionally only those of one type."""
    return [e for e in page.evaluate("() => window.__log.mouse") if type_ is None or e["type"] == type_]
