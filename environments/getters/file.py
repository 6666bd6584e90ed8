"""File getters (OSWorld `getters/file.py`): task-machine files copied into the task cache, reference
files from the offline mirror, files that setup steps saved, the last row of a spreadsheet."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from environments.controller import Controller


def _one_or_list(values: list) -> Any:
    """OSWorld's return convention: one path as itself, any other count as a list."""
    return values[0] if len(values) == 1 else values


def _targets(cfg: dict) -> tuple[list, list, set[int]]:
    if cfg.get("multi", False):
        return list(cfg["path"]), list(cfg["dest"]), set(cfg.get("gives", [0]))
    dest = cfg.get("dest") or Path(str(cfg["path"])).name
    return [cfg["path"]], [dest], set(cfg.get("gives", [0]))


def get_vm_file(c: Controller, cfg: dict) -> Any:
    """Copy task-machine file(s) into the task cache: the local path, or None for a missing file.
    `time_suffix` (single file) inserts the current time (`time_format`) before the extension."""
    paths, dests, gives = _targets(cfg)
    if not cfg.get("multi", False) and cfg.get("time_suffix", False):
        stamp = datetime.now().strftime(cfg.get("time_format", "%Y%m%d_%H%M%S"))
        stem, ext = os.path.splitext(dests[0])
        dests = [f"{stem}_{stamp}{ext}"]
    out = []
    for i, (path, dest) in enumerate(zip(paths, dests)):
        data = c.get_file(path)
        if data is None:
            if i in gives:
                out.append(None)
            continue
        local = c.task_cache / dest
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        if i in gives:
            out.append(str(local))
    return _one_or_list(out)


def get_cloud_file(c: Controller, cfg: dict) -> Any:
    """Reference file(s) by URL, from the offline mirror; a file already in the task cache is reused."""
    from environments.setup import fetch

    paths, dests, gives = _targets(cfg)
    out = []
    for i, (url, dest) in enumerate(zip(paths, dests)):
        local = c.task_cache / dest
        if i in gives:
            out.append(str(local))
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(fetch(url, c, dest=dest))
    return _one_or_list(out)


def get_cache_file(c: Controller, cfg: dict) -> str:
    """A file an `execute` step saved into the task cache (its `stdout:`/`stderr:` options)."""
    path = c.task_cache / cfg["path"]
    if not path.exists():
        raise FileNotFoundError(f"cache file {cfg['path']} was not written")
    return str(path)


def get_content_from_vm_file(c: Controller, cfg: dict) -> Any:
    """The last row of an xlsx's first sheet as pandas reads it, each value as `str` (so 3.0, nan)."""
    import pandas as pd

    from environments.metrics import Unsupported

    if cfg["file_type"] != "xlsx":
        raise Unsupported(f"content_from_vm_file file_type {cfg['file_type']!r}")
    local = get_vm_file(c, {"path": cfg["path"], "dest": os.path.basename(cfg["path"])})
    if local is None:
        raise FileNotFoundError(cfg["path"])
    if cfg["file_content"] != "last_row":
        return None
    return pd.read_excel(local).iloc[-1].astype(str).tolist()


GETTERS = {"vm_file": get_vm_file, "cloud_file": get_cloud_file, "cache_file": get_cache_file,
           "content_from_vm_file": get_content_from_vm_file}
