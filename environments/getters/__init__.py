"""OSWorld evaluator getters: read the task machine's state for a metric (one module per OSWorld
getter family).

`GETTERS` maps a getter `type` to `fn(controller, cfg)` where `cfg` is the getter object without
`type`, as OSWorld's `getters.get_<type>(env, cfg)` receives it. Return conventions follow OSWorld
(docs/osworld.md §3.2): a missing task-machine file is `None` (the metric then scores 0), a getter
that raises FileNotFoundError scores 0, any other exception is an evaluation error.
"""

from __future__ import annotations

from typing import Any, Callable

from environments.controller import Controller
from environments.getters import chrome, file, general, gimp, impress, info, misc, vlc
from environments.getters.chrome import active_tab_url

GETTERS: dict[str, Callable[[Controller, dict], Any]] = {}
for _module in (file, general, info, misc, chrome, vlc, gimp, impress):
    GETTERS.update(_module.GETTERS)

# OSWorld getters that are not here, and why (reported as the reason a task is skipped).
_LIVE_WEB = "reads a live website (OSWorld opens it in its VM's Chrome), which cannot be done offline"
NOT_IMPLEMENTED: dict[str, str] = {
    "googledrive_file": "needs a Google account (Google Drive)",
    "vscode_config": "needs OSWorld's own VS Code extension, and VS Code is not packaged in Debian",
    "accessibility_tree": "needs an AT-SPI dump of the desktop, which this harness does not produce",
    "info_from_website": _LIVE_WEB, "page_info": _LIVE_WEB, "pdf_from_url": _LIVE_WEB,
    "gotoRecreationPage_and_get_html_content": _LIVE_WEB, "number_of_search_results": _LIVE_WEB,
    "replay": "OSWorld's replay getter is a stub",
}

__all__ = ["GETTERS", "NOT_IMPLEMENTED", "active_tab_url"]
