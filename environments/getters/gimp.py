"""GIMP getters (OSWorld `getters/gimp.py`)."""

from __future__ import annotations

from environments.controller import Controller


def get_gimp_config_file(c: Controller, cfg: dict) -> str | None:
    """~/.config/GIMP/2.10/<file_name> copied into the task cache; None when missing or empty."""
    data = c.get_file(f"~/.config/GIMP/2.10/{cfg['file_name']}")
    if not data:
        return None
    local = c.task_cache / cfg["dest"]
    local.write_bytes(data)
    return str(local)


GETTERS = {"gimp_config_file": get_gimp_config_file}
