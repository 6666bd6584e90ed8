"""OSWorld evaluator getters: read the task machine's state for a metric.

`GETTERS` maps a getter `type` to `fn(controller, cfg)` where `cfg` is the getter object without
`type`, as OSWorld's `getters.get_<type>(env, cfg)` receives it. Return conventions follow OSWorld
(docs/osworld.md §3.2): a missing VM file is `None` (the metric then scores 0), a getter that
raises FileNotFoundError scores 0, any other exception is an evaluation error. Adding a getter is
one function and one registry line.

Chrome state is read from the managed profile, `~/.config/google-chrome` (the `google-chrome`
shim starts chromium with that user-data-dir), and live tabs through CDP on the environment's port.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from environments.controller import Controller
from environments.setup import cdp_browser, fetch

CHROME_PROFILE = "~/.config/google-chrome/Default"
CHROME_DEFAULT_FONTS = {"default_fixed_font_size": 13, "default_font_size": 16, "minimum_font_size": 13}


# ---- files -----------------------------------------------------------------------------------
def _as_lists(cfg: dict, key_path: str = "path", key_dest: str = "dest") -> tuple[list, list, list[int]]:
    if cfg.get("multi"):
        paths, dests = list(cfg[key_path]), list(cfg[key_dest])
        gives = list(cfg.get("gives", [0]))
    else:
        paths, dests, gives = [cfg[key_path]], [cfg.get(key_dest) or Path(str(cfg[key_path])).name], [0]
    return paths, dests, gives


def _one_or_list(values: list) -> Any:
    return values[0] if len(values) == 1 else values


def get_vm_file(c: Controller, cfg: dict) -> Any:
    """Copy VM file(s) into the task cache; None for a missing file."""
    paths, dests, gives = _as_lists(cfg)
    out = []
    for i, (p, d) in enumerate(zip(paths, dests)):
        data = c.get_file(p)
        if data is None:
            if i in gives:
                out.append(None)
            continue
        local = c.task_cache / d
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        if i in gives:
            out.append(str(local))
    return _one_or_list(out) if out else None


def get_cloud_file(c: Controller, cfg: dict) -> Any:
    """Reference file(s) by URL, from the offline mirror (cached per task)."""
    paths, dests, gives = _as_lists(cfg)
    out = []
    for i, (url, d) in enumerate(zip(paths, dests)):
        local = c.task_cache / d
        if not local.is_file():
            local.write_bytes(fetch(url, c, dest=d))
        if i in gives:
            out.append(str(local))
    return _one_or_list(out)


def get_cache_file(c: Controller, cfg: dict) -> str:
    """A file that an `execute` step saved into the task cache (`stdout:`/`stderr:` options)."""
    p = c.task_cache / cfg["path"]
    if not p.is_file():
        raise FileNotFoundError(f"cache file {cfg['path']} was not written")
    return str(p)


def get_content_from_vm_file(c: Controller, cfg: dict) -> Any:
    """Last row of the first sheet of an xlsx (OSWorld: file_type=xlsx, file_content=last_row)."""
    if cfg.get("file_type", "xlsx") != "xlsx" or cfg.get("file_content", "last_row") != "last_row":
        raise NotImplementedError(f"content_from_vm_file with {cfg.get('file_type')}/{cfg.get('file_content')}")
    local = get_vm_file(c, {"path": cfg["path"], "dest": Path(str(cfg["path"])).name})
    if local is None:
        raise FileNotFoundError(cfg["path"])
    import openpyxl

    ws = openpyxl.load_workbook(local, data_only=True).worksheets[0]
    rows = [r for r in ws.iter_rows(values_only=True) if any(v is not None for v in r)]
    return ["" if v is None else str(v) for v in rows[-1]] if rows else []


def get_list_directory(c: Controller, cfg: dict) -> dict:
    return c.list_directory(cfg["path"])


# ---- commands --------------------------------------------------------------------------------
def get_vm_command_line(c: Controller, cfg: dict) -> str:
    return c.run(cfg["command"], shell=_shell(cfg)).output


def get_vm_command_error(c: Controller, cfg: dict) -> str:
    return c.run(cfg["command"], shell=_shell(cfg)).error


_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Za-z0-9]|[=>78])")


def get_vm_terminal_output(c: Controller, cfg: dict) -> str | None:
    """Text of the terminal the user typed into last.

    OSWorld reads the focused gnome-terminal through AT-SPI; here the ctrl+alt+t terminal is an
    xterm that logs its session (`-l`), so this is the session's text (escape sequences removed),
    not only what is on screen. None when no terminal is open.
    """
    runtime = c.host_path(c.env["XDG_RUNTIME_DIR"])
    by_pid = {int(log.stem.split("-", 1)[1]): log for log in runtime.glob("terminal-*.log")
              if log.stem.split("-", 1)[1].isdigit()}  # named by the pid of their xterm in the sandbox
    live = [by_pid[pid] for pid in c.sandbox.alive(list(by_pid))] if by_pid else []
    if not live:
        return None
    text = max(live, key=lambda p: p.stat().st_mtime).read_bytes().decode("utf-8", errors="replace")
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "")


def _shell(cfg: dict) -> bool:
    from environments.tasks import truthy

    return truthy(cfg.get("shell", False))


# ---- rules / info ----------------------------------------------------------------------------
def get_rule(c: Controller, cfg: dict) -> Any:
    return cfg["rules"]


def get_time_diff_range(c: Controller, cfg: dict) -> Any:
    return cfg["diff_range_in_minutes"]


def get_vm_screen_size(c: Controller, cfg: dict) -> dict:
    w, h = c.screen_size
    return {"width": w, "height": h}


def get_vm_window_size(c: Controller, cfg: dict) -> dict | None:
    ids = c.run(["xdotool", "search", "--class", cfg["app_class_name"]], timeout=10).output.split()
    if not ids:
        return None
    geo = c.run(["xdotool", "getwindowgeometry", "--shell", ids[0]], timeout=10).output
    values = dict(line.split("=", 1) for line in geo.splitlines() if "=" in line)
    return {"width": int(values["WIDTH"]), "height": int(values["HEIGHT"])}


def get_default_video_player(c: Controller, cfg: dict) -> str:
    """Most common default handler over several video MIME types (`xdg-mime query default`)."""
    exts = ("3gp", "3gpp", "3gpp2", "avi", "divx", "dv", "fli", "flv", "mp2t", "mp4", "mpeg", "ogg",
            "quicktime", "vnd.avi", "webm", "x-flv", "x-matroska", "x-ms-wmv", "x-msvideo", "x-ogm+ogg",
            "x-theora+ogg")
    handlers = [c.run(["xdg-mime", "query", "default", f"video/{e}"], timeout=10).output.strip() for e in exts]
    return Counter(handlers).most_common(1)[0][0]


# ---- app config files ------------------------------------------------------------------------
def _copy_home_file(c: Controller, path: str, dest: str) -> str | None:
    return get_vm_file(c, {"path": path, "dest": dest})


def get_vlc_config(c: Controller, cfg: dict) -> str | None:
    return _copy_home_file(c, "~/.config/vlc/vlcrc", cfg.get("dest", "vlcrc"))


def get_gimp_config_file(c: Controller, cfg: dict) -> str | None:
    return _copy_home_file(c, f"~/.config/GIMP/2.10/{cfg['file_name']}", cfg.get("dest", cfg["file_name"]))


# ---- Chrome profile --------------------------------------------------------------------------
def _chrome_json(c: Controller, name: str) -> dict:
    """A JSON file of the profile; {} when chromium has not written it yet (defaults apply)."""
    data = c.get_file(f"{CHROME_PROFILE}/{name}")
    return json.loads(data) if data else {}


def _prefs(c: Controller) -> dict:
    return _chrome_json(c, "Preferences")


def get_default_search_engine(c: Controller, cfg: dict) -> str:
    return (_prefs(c).get("default_search_provider_data", {}).get("template_url_data", {})
            .get("short_name", "Google"))


def get_profile_name(c: Controller, cfg: dict) -> str | None:
    return _prefs(c).get("profile", {}).get("name")


def get_chrome_language(c: Controller, cfg: dict) -> str:
    data = c.get_file("~/.config/google-chrome/Local State")
    state = json.loads(data) if data else {}
    return state.get("intl", {}).get("app_locale", "en-US")


def get_chrome_font_size(c: Controller, cfg: dict) -> dict:
    return _prefs(c).get("webkit", {}).get("webprefs", dict(CHROME_DEFAULT_FONTS))


def get_enable_do_not_track(c: Controller, cfg: dict) -> str:
    return "true" if _prefs(c).get("enable_do_not_track", False) else "false"


def get_enable_safe_browsing(c: Controller, cfg: dict) -> str:
    sb = _prefs(c).get("safebrowsing", {})
    return "true" if sb.get("enabled", False) or sb.get("enhanced", False) else "false"


def get_enable_enhanced_safety_browsing(c: Controller, cfg: dict) -> str:
    return "true" if _prefs(c).get("safebrowsing", {}).get("enhanced", False) else "false"


def get_new_startup_page(c: Controller, cfg: dict) -> str:
    return "true" if _prefs(c).get("session", {}).get("restore_on_startup") == 5 else "false"


def get_data_delete_automacally(c: Controller, cfg: dict) -> str:
    return "true" if "default_content_setting_values" in _prefs(c).get("profile", {}) else "false"


def get_enabled_experiments(c: Controller, cfg: dict) -> list:
    data = c.get_file("~/.config/google-chrome/Local State")
    state = json.loads(data) if data else {}
    return state.get("browser", {}).get("enabled_labs_experiments", [])


def get_bookmarks(c: Controller, cfg: dict) -> dict | None:
    data = c.get_file(f"{CHROME_PROFILE}/Bookmarks")
    return json.loads(data).get("roots") if data else None


def _sqlite_rows(c: Controller, name: str, dest: str, sql: str) -> list[tuple]:
    src = c.host_path(f"{CHROME_PROFILE}/{name}")
    if not src.is_file():
        raise FileNotFoundError(f"chrome profile has no {name} database")
    local = c.task_cache / dest
    shutil.copyfile(src, local)
    con = sqlite3.connect(local)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def get_history(c: Controller, cfg: dict) -> list[tuple]:
    return _sqlite_rows(c, "History", cfg.get("dest", "History"), "SELECT url, title, last_visit_time FROM urls")


def get_cookie_data(c: Controller, cfg: dict) -> list[tuple]:
    return _sqlite_rows(c, "Cookies", cfg.get("dest", "Cookies"), "SELECT * FROM cookies")


def get_find_installed_extension_name(c: Controller, cfg: dict) -> list[str]:
    """`name` of every installed extension (`Extensions/<id>/<version>/manifest.json`)."""
    root = c.host_path(f"{CHROME_PROFILE}/Extensions")
    names = []
    for manifest in sorted(root.glob("*/*/manifest.json")) if root.is_dir() else []:
        names.append(json.loads(manifest.read_text(encoding="utf-8-sig")).get("name"))
    return names


def get_shortcuts_on_desktop(c: Controller, cfg: dict) -> dict[str, str]:
    desktop = c.host_path("~/Desktop")
    if not desktop.is_dir():
        return {}
    return {str(p): p.read_text(errors="replace") for p in sorted(desktop.glob("*.desktop"))}


# ---- live tabs over CDP ----------------------------------------------------------------------
def get_open_tabs_info(c: Controller, cfg: dict) -> list[dict]:
    tabs = []
    with cdp_browser(c) as browser:
        for context in browser.contexts:
            for page in context.pages:
                try:
                    page.wait_for_load_state("networkidle", timeout=30_000)
                except Exception:  # OSWorld keeps the tab even if it never settles
                    pass
                tabs.append({"title": page.title(), "url": page.url})
    return tabs


def active_tab_url(c: Controller) -> str | None:
    """URL of the tab the user is looking at.

    Chromium's DevTools `/json/list` lists page targets most recently activated first; Playwright's
    focus emulation makes every page report `visible`/`hasFocus()`, so those cannot tell.
    """
    import httpx

    targets = httpx.get(f"http://127.0.0.1:{c.chrome_port}/json/list", timeout=10).json()
    pages = [t for t in targets if t.get("type") == "page" and not t.get("url", "").startswith("devtools://")]
    return pages[0]["url"] if pages else None


def get_active_tab_info(c: Controller, cfg: dict) -> dict | None:
    url = active_tab_url(c)
    if url is None:
        return None
    with cdp_browser(c) as browser:
        page = next((p for ctx in browser.contexts for p in ctx.pages if p.url == url), None)
        if page is None:
            return None
        try:
            page.wait_for_load_state("load", timeout=30_000)
        except Exception:
            pass
        return {"title": page.title(), "url": page.url, "content": page.content()}


def get_active_url_from_accessTree(c: Controller, cfg: dict) -> str | None:
    """OSWorld reads the omnibox text (no scheme for http/https) and prefixes `goto_prefix`.

    Here the URL comes from DevTools (the active tab); the omnibox's scheme elision is reproduced.
    """
    url = active_tab_url(c)
    if url is None:
        return None
    for scheme in ("https://", "http://"):
        if url.startswith(scheme):
            return cfg.get("goto_prefix", "https://") + url[len(scheme):]
    return url


GETTERS: dict[str, Callable[[Controller, dict], Any]] = {
    "vm_file": get_vm_file,
    "cloud_file": get_cloud_file,
    "cache_file": get_cache_file,
    "content_from_vm_file": get_content_from_vm_file,
    "list_directory": get_list_directory,
    "vm_command_line": get_vm_command_line,
    "vm_command_error": get_vm_command_error,
    "vm_terminal_output": get_vm_terminal_output,
    "rule": get_rule,
    "time_diff_range": get_time_diff_range,
    "vm_screen_size": get_vm_screen_size,
    "vm_window_size": get_vm_window_size,
    "default_video_player": get_default_video_player,
    "vlc_config": get_vlc_config,
    "gimp_config_file": get_gimp_config_file,
    "default_search_engine": get_default_search_engine,
    "profile_name": get_profile_name,
    "chrome_language": get_chrome_language,
    "chrome_font_size": get_chrome_font_size,
    "enable_do_not_track": get_enable_do_not_track,
    "enable_safe_browsing": get_enable_safe_browsing,
    "enable_enhanced_safety_browsing": get_enable_enhanced_safety_browsing,
    "new_startup_page": get_new_startup_page,
    "data_delete_automacally": get_data_delete_automacally,
    "enabled_experiments": get_enabled_experiments,
    "bookmarks": get_bookmarks,
    "history": get_history,
    "cookie_data": get_cookie_data,
    "shortcuts_on_desktop": get_shortcuts_on_desktop,
    "find_installed_extension_name": get_find_installed_extension_name,
    "open_tabs_info": get_open_tabs_info,
    "active_tab_info": get_active_tab_info,
    "active_url_from_accessTree": get_active_url_from_accessTree,
}
