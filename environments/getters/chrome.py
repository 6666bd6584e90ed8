"""Browser getters (OSWorld `getters/chrome.py`): the profile's files and the live tabs.

Profile files are read from `~/.config/google-chrome` (the `google-chrome` shim starts chromium with
that user-data-dir) with OSWorld's fallbacks: a getter whose file is missing or unreadable returns
the value OSWorld's returns then (often the string "Google"). Live tabs come through CDP.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from environments.controller import Controller

CHROME_DIR = "~/.config/google-chrome"
CHROME_PROFILE = f"{CHROME_DIR}/Default"


def _json(c: Controller, path: str) -> Any:
    """The parsed file; raises (as OSWorld's json.loads does) when it is missing or not JSON."""
    return json.loads(c.get_file(path))


def _preferences(c: Controller) -> Any:
    return _json(c, f"{CHROME_PROFILE}/Preferences")


def _pref_getter(read, fallback):
    def getter(c: Controller, cfg: dict) -> Any:
        try:
            return read(_preferences(c))
        except Exception:
            return fallback

    return getter


def _true_false(value: Any) -> str:
    return "true" if value else "false"


get_default_search_engine = _pref_getter(
    lambda d: d.get("default_search_provider_data", {}).get("template_url_data", {}).get("short_name", "Google"),
    "Google")
get_profile_name = _pref_getter(lambda d: d.get("profile", {}).get("name", None), None)
get_chrome_font_size = _pref_getter(
    lambda d: d.get("webkit", {}).get("webprefs", {"default_fixed_font_size": 13, "default_font_size": 16,
                                                   "minimum_font_size": 13}),
    {"default_fixed_font_size": 13, "default_font_size": 16})
get_enable_do_not_track = _pref_getter(lambda d: _true_false(d.get("enable_do_not_track", {})), "false")
get_enable_enhanced_safety_browsing = _pref_getter(
    lambda d: _true_false(d.get("safebrowsing", {}).get("enhanced", {})), "Google")
get_enable_safe_browsing = _pref_getter(
    lambda d: _true_false(bool(d.get("safebrowsing", {}).get("enhanced", False))
                          or bool(d.get("safebrowsing", {}).get("enabled", False))), "false")
# No `session` key: a fresh profile, which opens the new-tab page.
get_new_startup_page = _pref_getter(
    lambda d: "true" if "session" not in d.keys() else _true_false(d.get("session", {}).get("restore_on_startup", {}) == 5),
    "Google")
get_find_unpacked_extension_path = _pref_getter(
    lambda d: [ext["path"] for ext in d.get("extensions", {}).get("settings", {}).values()], "Google")
get_find_installed_extension_name = _pref_getter(
    lambda d: [ext["manifest"]["name"] for ext in d.get("extensions", {}).get("settings", {}).values()], "Google")


def _site_settings_set(profile: dict) -> bool:
    """OSWorld: "true" when `profile.default_content_setting_values` exists, which in the Chrome of its
    image happens once a site-data setting (cookies cleared on exit) is changed. Chromium ≥ 13x writes
    that dict into every fresh profile with its own migration flags (`has_migrated_…`); a dict holding
    only those is read as absent, so an untouched profile reads "false" as it does in OSWorld's image."""
    values = profile.get("default_content_setting_values", None)
    if values is None:
        return False
    return not (isinstance(values, dict) and values and all(k.startswith("has_migrated") for k in values))


get_data_delete_automacally = _pref_getter(lambda d: _true_false(_site_settings_set(d["profile"])), "Google")


def _local_state_getter(read, fallback):
    def getter(c: Controller, cfg: dict) -> Any:
        try:
            return read(_json(c, f"{CHROME_DIR}/Local State"))
        except Exception:
            return fallback

    return getter


get_chrome_language = _local_state_getter(lambda d: d.get("intl", {}).get("app_locale", "en-US"), "en-US")
get_enabled_experiments = _local_state_getter(lambda d: d.get("browser", {}).get("enabled_labs_experiments", []), [])


def get_bookmarks(c: Controller, cfg: dict) -> Any:
    """The Bookmarks file's `roots`; [] when there is no file."""
    data = c.get_file(f"{CHROME_PROFILE}/Bookmarks")
    if not data:
        return []
    return json.loads(data).get("roots", {})


def _sqlite_rows(c: Controller, name: str, cfg: dict, sql: str) -> list[tuple] | None:
    """Rows of a profile database (copied into the task cache first); None when it cannot be read."""
    try:
        data = c.get_file(f"{CHROME_PROFILE}/{name}")
        local = c.task_cache / cfg["dest"]
        local.write_bytes(data)
        con = sqlite3.connect(local)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except Exception:
        return None


def get_history(c: Controller, cfg: dict) -> list[tuple] | None:
    return _sqlite_rows(c, "History", cfg, "SELECT url, title, last_visit_time FROM urls")


def get_cookie_data(c: Controller, cfg: dict) -> list[tuple] | None:
    return _sqlite_rows(c, "Cookies", cfg, "SELECT * FROM cookies")


def get_shortcuts_on_desktop(c: Controller, cfg: dict) -> dict[str, str]:
    """`{file name: text}` of the .desktop files on ~/Desktop."""
    try:
        tree = c.list_directory("~/Desktop")
    except FileNotFoundError:
        return {}
    names = [f["name"] for f in tree["children"] if f["name"].endswith(".desktop")]
    return {name: (c.get_file(f"~/Desktop/{name}") or b"").decode("utf-8") for name in names}


# ---- live tabs over CDP ----------------------------------------------------------------------
def active_tab_url(c: Controller) -> str | None:
    """URL of the tab the user is looking at.

    Chromium's DevTools `/json/list` lists page targets most recently activated first; Playwright's
    focus emulation makes every page report `visible`/`hasFocus()`, so those cannot tell.
    """
    import httpx

    try:
        targets = httpx.get(f"http://127.0.0.1:{c.chrome_port}/json/list", timeout=10).json()
    except httpx.HTTPError:
        return None
    pages = [t for t in targets if t.get("type") == "page" and not t.get("url", "").startswith("devtools://")]
    return pages[0]["url"] if pages else None


def omnibox_text(url: str) -> str:
    """What Chrome's address bar shows for `url`: http(s) URLs without their scheme and a leading
    `www.` (and without the `/` of a bare host); other schemes (chrome://, file://) in full."""
    for scheme in ("https://", "http://"):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            rest = rest[4:] if rest.startswith("www.") else rest
            host, slash, tail = rest.partition("/")
            return host if slash and not tail else rest
    return url


def get_active_url_from_accessTree(c: Controller, cfg: dict) -> str | None:
    """OSWorld reads the address bar's text through AT-SPI and prepends `goto_prefix` (default https://).

    Here the active tab's URL comes from DevTools and the address bar's elision is reproduced, so the
    result is the same string."""
    url = active_tab_url(c)
    if url is None:
        return None
    return cfg.get("goto_prefix", "https://") + omnibox_text(url)


def get_open_tabs_info(c: Controller, cfg: dict) -> list[dict]:
    from environments.setup import cdp_browser

    tabs = []
    with cdp_browser(c) as browser:
        for context in browser.contexts:
            for page in context.pages:
                try:
                    page.wait_for_load_state("networkidle", timeout=30_000)
                    tabs.append({"title": page.title(), "url": page.url})
                except Exception:  # OSWorld keeps the tab with a placeholder title
                    tabs.append({"title": "Load timeout", "url": page.url})
    return tabs


def _find_page(browser, url: str):
    def norm(u: str) -> str:
        return unquote(u).rstrip("/")

    for context in browser.contexts:
        for page in context.pages:
            try:
                if not page.is_closed() and norm(page.url) == norm(url):
                    return page
            except Exception:
                continue
    return None


def get_active_tab_info(c: Controller, cfg: dict) -> dict | None:
    """{title, url, content} of the active tab's URL (as get_active_url_from_accessTree rebuilds it),
    opened afresh in a temporary page as OSWorld does; None when there is no tab or it does not load."""
    from environments.setup import cdp_browser

    url = get_active_url_from_accessTree(c, cfg)
    if url is None:
        return None
    with cdp_browser(c) as browser:
        page = browser.new_page()
        try:
            try:
                page.goto(url, wait_until="networkidle", timeout=60_000)
            except Exception as e:
                if "Timeout" not in type(e).__name__:
                    return None
                return {"title": "Load timeout", "url": page.url, "content": page.content()}
            return {"title": page.title(), "url": page.url, "content": page.content()}
        finally:
            page.context.close()


def get_active_tab_url_parse(c: Controller, cfg: dict) -> dict | None:
    """`{key: first query value or ""}` for `parse_keys` of the active URL; `replace` renames keys,
    `split_list` splits values on commas."""
    url = get_active_url_from_accessTree(c, cfg)
    if url is None:
        return None
    query = parse_qs(urlparse(url).query)
    params = {key: query.get(key, [""])[0] for key in cfg["parse_keys"]}
    for old, new in cfg.get("replace", {}).items():
        params[new] = params.pop(old)
    if cfg.get("split_list", False):
        params = {k: v.split(",") for k, v in params.items()}
    return params


def get_url_dashPart(c: Controller, cfg: dict) -> Any:
    """Part `partIndex` of the active URL split on "/" (`needDeleteId`: without its query), as a string
    or as `{key: part}` (`returnType` json)."""
    url = get_active_url_from_accessTree(c, cfg)
    if url is None:
        return None
    try:
        index = int(cfg["partIndex"])
    except (ValueError, TypeError):
        return None
    parts = url.split("/")
    if index >= len(parts):
        return None
    part = parts[index]
    if cfg.get("needDeleteId", False):
        part = part.split("?")[0]
    if cfg["returnType"] == "string":
        return part
    if cfg["returnType"] == "json":
        return {cfg["key"]: part}
    return None


def _texts(page, selector: str) -> list[str]:
    try:
        return [e.text_content().strip() for e in page.query_selector_all(selector) if e]
    except Exception:
        return []


def _direct_texts(page, selector: str) -> list[str]:
    """The direct text nodes of the first element matching `selector`."""
    try:
        found = [e.evaluate("(n) => Array.from(n.childNodes).filter(c => c.nodeType === Node.TEXT_NODE)"
                            ".map(c => c.textContent.trim()).filter(Boolean)")
                 for e in page.query_selector_all(selector)]
        return found[0] if found else []
    except Exception:
        return []


def _child_texts(page, selector: str, child: str, method: str) -> list[str]:
    try:
        out = []
        for e in page.query_selector_all(selector):
            sub = e.query_selector(child)
            if sub:
                out.append(getattr(sub, method)().strip())
        return out
    except Exception:
        return []


def _first_text(locator, value: bool = False) -> str:
    try:
        if locator.count() == 0:
            return ""
        text = locator.first.input_value() if value else locator.first.text_content()
        return text.strip() if text else ""
    except Exception:
        return ""


def _by_index(texts: list[str], index_map: dict) -> dict:
    return {key: texts[int(i)] if len(texts) > int(i) else "" for i, key in index_map.items()}


def _class_fields(page, cfg: dict) -> dict:
    out: dict[str, Any] = {}
    for name, index_map in cfg.get("class_multiObject", {}).items():
        out.update(_by_index(_texts(page, "." + name), index_map))
    for name, index_map in cfg.get("class_multiObject_child", {}).items():
        out.update(_by_index(_direct_texts(page, "." + name), index_map))
    for name, index_map in cfg.get("class_multiObject_only_child", {}).items():
        out.update(_by_index(_child_texts(page, "." + name, "h3", "text_content"), index_map))
    for name, wanted in cfg.get("class_multiObject_search_exist", {}).items():
        texts = _texts(page, "." + name)
        for item in wanted:
            if item != "is_other_exist":
                out[item] = item in texts
        if "is_other_exist" in wanted:
            if any(t not in wanted for t in texts):
                out["is_other_exist"] = True
            out.setdefault("is_other_exist", False)
    for name, key in cfg.get("class_singleObject", {}).items():
        texts = _texts(page, "." + name)
        out[key] = texts[0] if texts else ""
    return out


def _class_and_url_fields(page, cfg: dict) -> dict:
    out: dict[str, Any] = {}

    def mark(texts: list[str], wanted: list[str]) -> None:
        for key in wanted:
            if any(key.lower() == t.lower() for t in texts):
                out[key.lower()] = True
        if any(all(t.lower() not in w.lower() for w in wanted) for t in texts):
            out["is_other_exist"] = True
        out.setdefault("is_other_exist", False)

    for name, wanted in cfg.get("class_multiObject", {}).items():
        mark(_texts(page, "." + name), wanted)
    for name, wanted in cfg.get("class_multiObject_li", {}).items():
        mark(_child_texts(page, "." + name + " li.catAllProducts", "span", "inner_text"), wanted)
    url = page.url.lower()
    for key in cfg.get("url_include_expected", []):
        out.setdefault(key.lower(), key.lower() in url)
    for key, value in cfg.get("url_include_expected_multichoice", {}).items():
        out.setdefault(value.lower(), key.lower() in url)
    return out


def get_active_tab_html_parse(c: Controller, cfg: dict) -> dict | None:
    """Texts of the active tab's elements, keyed as the task says (OSWorld's categories): `class`
    (class_multiObject[_child|_only_child|_search_exist], class_singleObject), `label` (text=...
    locators), `xpath`, `input` (input values by xpath), `class&url`. A missing element gives "".
    No active tab → None; no open page with the active URL → {}."""
    from environments.setup import cdp_browser

    url = get_active_url_from_accessTree(c, cfg)
    if not isinstance(url, str):
        return None
    with cdp_browser(c) as browser:
        page = _find_page(browser, url)  # OSWorld matches the rebuilt URL, www. prefix and all
        if page is None:
            return {}
        try:
            page.wait_for_load_state("networkidle", timeout=60_000)
        except Exception:
            pass
        category = cfg["category"]
        if category == "class":
            return _class_fields(page, cfg)
        if category == "label":
            return {key: _first_text(page.locator(f"text={selector}")) for selector, key in cfg.get("labelObject", {}).items()}
        if category == "xpath":
            out = {}
            for xpath, key in cfg.get("xpathObject", {}).items():
                text = _first_text(page.locator(f"xpath={xpath}"))
                out[key] = text
            return out
        if category == "input":
            return {key: _first_text(page.locator(f"xpath={xpath}"), value=True)
                    for xpath, key in cfg.get("inputObject", {}).items()}
        if category == "class&url":
            return _class_and_url_fields(page, cfg)
        return {}


GETTERS = {
    "default_search_engine": get_default_search_engine, "profile_name": get_profile_name,
    "chrome_font_size": get_chrome_font_size, "enable_do_not_track": get_enable_do_not_track,
    "enable_enhanced_safety_browsing": get_enable_enhanced_safety_browsing,
    "enable_safe_browsing": get_enable_safe_browsing, "new_startup_page": get_new_startup_page,
    "find_unpacked_extension_path": get_find_unpacked_extension_path,
    "find_installed_extension_name": get_find_installed_extension_name,
    "data_delete_automacally": get_data_delete_automacally, "chrome_language": get_chrome_language,
    "enabled_experiments": get_enabled_experiments, "bookmarks": get_bookmarks, "history": get_history,
    "cookie_data": get_cookie_data, "shortcuts_on_desktop": get_shortcuts_on_desktop,
    "active_url_from_accessTree": get_active_url_from_accessTree, "open_tabs_info": get_open_tabs_info,
    "active_tab_info": get_active_tab_info, "active_tab_url_parse": get_active_tab_url_parse,
    "url_dashPart": get_url_dashPart, "active_tab_html_parse": get_active_tab_html_parse,
}
