"""Desktop getters (OSWorld `getters/info.py`): screen and window sizes, wallpaper, folder trees."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from environments.controller import Controller


def get_vm_screen_size(c: Controller, cfg: dict) -> dict:
    w, h = c.screen_size
    return {"width": w, "height": h}


def get_vm_window_size(c: Controller, cfg: dict) -> dict | None:
    """Size of the first window of class `app_class_name` (xdotool); None if there is none."""
    ids = c.run(["xdotool", "search", "--class", cfg["app_class_name"]], timeout=10).output.split()
    if not ids:
        return None
    geo = c.run(["xdotool", "getwindowgeometry", "--shell", ids[0]], timeout=10).output
    values = dict(line.split("=", 1) for line in geo.splitlines() if "=" in line)
    return {"width": int(values["WIDTH"]), "height": int(values["HEIGHT"])}


def get_vm_wallpaper(c: Controller, cfg: dict) -> str:
    """The desktop background image (gsettings org.gnome.desktop.background picture-uri), copied into
    the task cache; an empty file when there is none, as in OSWorld."""
    out = c.run(["gsettings", "get", "org.gnome.desktop.background", "picture-uri"], timeout=10).output.strip()
    uri = out.strip("'\"")
    data = c.get_file(unquote(urlparse(uri).path)) if uri.startswith("file://") else (c.get_file(uri) if uri else None)
    local = c.task_cache / cfg["dest"]
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data or b"")
    return str(local)


def get_list_directory(c: Controller, cfg: dict) -> dict:
    return c.list_directory(cfg["path"])


GETTERS = {"vm_screen_size": get_vm_screen_size, "vm_window_size": get_vm_window_size,
           "vm_wallpaper": get_vm_wallpaper, "list_directory": get_list_directory}
