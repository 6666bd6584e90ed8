"""Ubuntu desktop metrics (OSWorld `metrics/basic_os.py`): gsettings values, timedatectl, folders, clipboard."""

from __future__ import annotations

import ast
from typing import Any


def check_gnome_favorite_apps(apps: str | None, rule: dict) -> float:
    """gsettings' list literal (OSWorld evaluates it; here `ast.literal_eval`) has the expected apps,
    as many as expected. Output that is not a list literal scores 0 (OSWorld: raises)."""
    try:
        got = ast.literal_eval(apps)
        n = len(got)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return 0.0
    want = rule["expected"]
    return float(n == len(want) and set(got) == set(want))


def is_utc_0(timedatectl_output: str | None) -> float:
    """timedatectl's 4th line ("Time zone: … +0000)") ends in +0000); fewer lines score 0 (OSWorld: raises)."""
    lines = timedatectl_output.split("\n") if isinstance(timedatectl_output, str) else []
    return float(len(lines) > 3 and lines[3].endswith("+0000)"))


def check_text_enlarged(scaling_factor: str | None) -> float:
    """gsettings' text-scaling-factor above 1; not a number scores 0 (OSWorld: raises)."""
    try:
        return float(float(scaling_factor) > 1.0)
    except (TypeError, ValueError):
        return 0.0


def check_moved_jpgs(directory: dict | None, rule: dict) -> float:
    """Names of the folder's immediate children are the expected ones; no folder scores 0 (OSWorld: raises)."""
    if not isinstance(directory, dict):
        return 0.0
    names = [node["name"] for node in directory["children"]]
    want = rule["expected"]
    return float(len(names) == len(want) and set(names) == set(want))


def is_in_vm_clickboard(config: dict, terminal_output: Any) -> float:
    """The expected text (every one, for a list) is in the command's output; no output scores 0
    (OSWorld: raises)."""
    expected = config["expected"]
    try:
        if not isinstance(expected, list):
            return float(expected in terminal_output)
        return float(all(e in terminal_output for e in expected))
    except TypeError:
        return 0.0


METRICS = {f.__name__: f for f in (
    check_gnome_favorite_apps, is_utc_0, check_text_enlarged, check_moved_jpgs, is_in_vm_clickboard)}
