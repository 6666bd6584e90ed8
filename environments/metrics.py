"""OSWorld metrics, reimplemented from their documented semantics (docs/osworld.md §3.3).

`METRICS` maps a metric name to `fn(result, expected, **options)` (or `fn(result, **options)`
when the task has no `expected`). Arguments keep OSWorld's positional order even where a task
puts the rule first. Scores are floats in [0, 1]. A metric that meets a case it does not
implement raises `Unsupported`, which the evaluator reports as skipped, never as a score.
"""

from __future__ import annotations

import ast
import csv
import difflib
import fnmatch
import functools
import json
import operator
import os
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse, urlunparse


class Unsupported(Exception):
    """The metric cannot evaluate this case here (reported as skipped: unsupported)."""


# ---- shared rule helpers (OSWorld metrics/utils.py) ------------------------------------------
def match_value_to_rule(value: Any, rule: dict) -> bool:
    """`{"method": m, "ref": r}`: re[.FLAG…], eq/ne/le/lt/ge/gt, approx:T, range.XY, str_list_eq, str_set_eq."""
    method: str = rule["method"]
    ref = rule["ref"]
    if method.startswith("re"):
        flags = 0
        for name in method.split(".")[1:]:
            flags |= getattr(re, name)
        return value is not None and re.search(ref, str(value), flags) is not None
    if method in ("eq", "ne", "le", "lt", "ge", "gt"):
        return getattr(operator, method)(value, ref)
    if method.startswith("approx"):
        tolerance = float(method.split(":", 1)[1])
        try:
            return abs(float(value) - float(ref)) <= tolerance
        except (TypeError, ValueError):
            return False
    if method.startswith("range."):
        low_op = operator.lt if method[6] == "t" else operator.le
        high_op = operator.lt if method[7] == "t" else operator.le
        return low_op(ref[0], value) and high_op(value, ref[1])
    if method in ("str_list_eq", "str_set_eq"):
        items = str(value).strip("\"'").split(",")
        return items == list(ref) if method == "str_list_eq" else set(items) == set(ref)
    raise Unsupported(f"rule method {method!r}")


def match_record(pattern: dict, item: dict) -> bool:
    return all(k in item and item[k] == v for k, v in pattern.items())


@functools.lru_cache(maxsize=1)
def _tld_extractor():
    import tldextract

    # The bundled public-suffix snapshot only: never fetch the list from the internet.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def compare_urls(url1: str | None, url2: str | None, full: bool = True) -> bool:
    """Same site and path: public suffix and a lone `www` dropped, `/` path ignored."""
    if url1 is None or url2 is None:
        return url1 == url2

    def norm(url: str) -> str:
        if not urlparse(url).scheme:
            url = "http://" + url
        p = urlparse(url)
        ext = _tld_extractor()(p.netloc)
        sub = "" if ext.subdomain == "www" else ext.subdomain
        host = ".".join(x for x in (sub, ext.domain) if x)
        path = "" if p.path == "/" else p.path
        if full:
            return urlunparse((p.scheme.lower(), host, path, p.params, p.query, p.fragment))
        return urlunparse((p.scheme.lower(), host, path, "", "", ""))

    return norm(url1) == norm(url2)


def _read_text(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    return Path(path).read_text(encoding="utf-8", errors="replace")


# ---- general.py ------------------------------------------------------------------------------
def check_include_exclude(result: str | None, rules: dict, **_: Any) -> float:
    if result is None:
        return 0.0
    ok = all(s in result for s in rules.get("include", [])) and not any(s in result for s in rules.get("exclude", []))
    return float(ok)


def exact_match(result: Any, rules: dict, **_: Any) -> float:
    return float(result == rules["expected"])


def match_in_list(result: Any, rules: dict, **_: Any) -> float:
    return float(result in rules["expected"])


def is_in_list(result: Any, rules: dict, **_: Any) -> float:
    return float(result is not None and rules["expected"] in result)


def literal_match(result: Any, expected: Any, type: str = "str", ignore_case: bool = False, **_: Any) -> float:
    def s(v: Any) -> str:
        return str(v).lower() if ignore_case else str(v)

    if type == "list":
        if not isinstance(result, list) or not isinstance(expected, list) or len(result) != len(expected):
            return 0.0
        return float(all(s(a) == s(b) for a, b in zip(result, expected)))
    return float(s(result) == s(expected))


def fuzzy_match(result: str | None, rules: dict, **_: Any) -> float:
    from rapidfuzz import fuzz

    if result is None:
        return 0.0
    return fuzz.ratio(result, rules["expected"]) / 100.0


def diff_text_file(result: str | None, expected: str | None, **_: Any) -> float:
    a, b = _read_text(result), _read_text(expected)
    if a is None or b is None:
        return 0.0
    return difflib.SequenceMatcher(None, a.splitlines(), b.splitlines()).ratio()


def check_list(result: str | None, rules: dict, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    lines = text.splitlines()
    expect_ok = all(any(re.search(p, line) for line in lines) for p in rules.get("expect", []))
    unexpect_hit = any(re.search(p, line) for p in rules.get("unexpect", []) for line in lines)
    return float(expect_ok and not unexpect_hit)


def check_csv(result: str | None, rules: dict, **_: Any) -> float:
    if not result or not os.path.isfile(result):
        return 0.0
    with open(result, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    expect_ok = all(any(match_record(r, row) for row in rows) for r in rules.get("expect", []))
    unexpect_hit = any(match_record(r, row) for r in rules.get("unexpect", []) for row in rows)
    return float(expect_ok and not unexpect_hit)


_MISSING = object()


def _walk(data: Any, keys: list) -> Any:
    for k in keys:
        try:
            data = data[k]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def check_json(result: str | None, rules: dict, is_yaml: bool = False, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    try:
        if is_yaml:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception:
        return 0.0
    for r in rules.get("expect", []):
        value = _walk(data, r["key"])
        if value is _MISSING or not match_value_to_rule(value, r):
            return 0.0
    for r in rules.get("unexpect", []):
        value = _walk(data, r["key"])
        if match_value_to_rule(None if value is _MISSING else value, r):
            return 0.0
    return 1.0


def check_direct_json_object(result: Any, rules: dict, **_: Any) -> float:
    if isinstance(result, str):
        try:
            result = json.loads(result.strip().replace("'", '"'))
        except json.JSONDecodeError:
            return 0.0
    if result is None:
        return 0.0
    expected = rules["expected"]
    if any(v == "__EVALUATION_FAILED__" for v in expected.values()):
        return 0.0
    if rules.get("expect_in_result", False):
        for k, ref in expected.items():
            value = result.get(k) if isinstance(result, dict) else None
            if value is None:
                return 0.0
            if isinstance(ref, list):
                ok = any(v in value for v in ref) if isinstance(value, list) else value in ref
            elif isinstance(ref, str):
                ok = isinstance(value, str) and ref in value
            else:
                ok = value == ref
            if not ok:
                return 0.0
        return 1.0
    ignore_order = bool(expected.get("ignore_list_order", False))
    for k, ref in expected.items():
        if k == "ignore_list_order":
            continue
        if not isinstance(result, dict) or k not in result:
            return 0.0
        value = result[k]
        if ignore_order and isinstance(ref, list) and isinstance(value, list):
            value, ref = sorted(map(str, value)), sorted(map(str, ref))
        if value != ref:
            return 0.0
    return 1.0


def run_sqlite3(result: str | None, rules: dict, **_: Any) -> float:
    import sqlite3

    if not result or not os.path.isfile(result):
        return 0.0
    con = sqlite3.connect(result)
    try:
        row = con.execute(rules["sql"]).fetchone()
    finally:
        con.close()
    return float(row[0]) if row and row[0] is not None else 0.0


def file_contains(result: str | None, rules: dict, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    return float(all(s in text for s in rules["expected"]))


_TIME_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)")


def check_line_number(result: str | None, rules: dict, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    n = sum(1 for line in text.splitlines() if _TIME_RE.search(line))
    return float(n == int(rules["expected"]))


def compare_terminal_and_txt(result: str | None, expected: str | None, **_: Any) -> float:
    text = _read_text(result)
    return float(text is not None and text == expected)


def compare_python_pure_text(result: str | None, expected: str | None, **_: Any) -> float:
    a, b = _read_text(result), _read_text(expected)
    if a is None or b is None:
        return 0.0

    def clean(src: str) -> list[str]:
        lines = src.splitlines()
        head = [ln for ln in lines[:3] if not (ln.startswith("#!") or re.match(r"#.*coding[:=]", ln))]
        body = head + lines[3:]
        return [ln.expandtabs(4).rstrip() for ln in body if ln.strip()]

    return float(clean(a) == clean(b))


def is_included_all_json_objects(expected: str | None, result: str | None, **_: Any) -> float:
    a, b = _read_text(expected), _read_text(result)
    if a is None or b is None:
        return 0.0
    gold, got = json.loads(a), json.loads(b)
    return float(all(k in got and got[k] == v for k, v in gold.items()))


# ---- basic_os.py -----------------------------------------------------------------------------
def check_gnome_favorite_apps(result: str | None, rules: dict, **_: Any) -> float:
    if not result:
        return 0.0
    try:
        apps = ast.literal_eval(result.strip())
    except (ValueError, SyntaxError):
        return 0.0
    expected = rules["expected"]
    return float(len(apps) == len(expected) and set(apps) == set(expected))


def is_utc_0(result: str | None, **_: Any) -> float:
    lines = (result or "").splitlines()
    return float(len(lines) > 3 and lines[3].rstrip().endswith("+0000)"))


def check_text_enlarged(result: str | None, **_: Any) -> float:
    try:
        return float(float((result or "").strip()) > 1.0)
    except ValueError:
        return 0.0


def check_moved_jpgs(result: dict | None, rules: dict, **_: Any) -> float:
    if not result:
        return 0.0
    names = [child["name"] for child in result.get("children", [])]
    expected = rules["expected"]
    return float(len(names) == len(expected) and set(names) == set(expected))


def is_in_vm_clickboard(config: dict, output: str | None, **_: Any) -> float:
    expected = config["expected"]
    text = output or ""
    if isinstance(expected, list):
        return float(all(e in text for e in expected))
    return float(expected in text)


# ---- vscode.py (text/config files) -----------------------------------------------------------
def compare_text_file(result: str | None, expected: str | None, ignore_blanks: bool = False,
                      ignore_case: bool = False, **_: Any) -> float:
    if not result:
        return 0.0
    a, b = _read_text(result), _read_text(expected)
    if a is None or b is None:
        return 0.0
    if ignore_blanks:
        a = re.sub(r"\s+", " ", re.sub(r"[\t\n]", " ", a)).strip()
        b = re.sub(r"\s+", " ", re.sub(r"[\t\n]", " ", b)).strip()
    if ignore_case:
        a, b = a.lower(), b.lower()
    return float(a == b)


def _load_json_file(path: str | None, skip_first_line: bool = False) -> Any:
    text = _read_text(path)
    if text is None:
        return _MISSING
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if skip_first_line:
            try:
                return json.loads("\n".join(text.splitlines()[1:]))
            except json.JSONDecodeError:
                return _MISSING
        return _MISSING


def check_json_settings(result: str | None, expected: dict, **_: Any) -> float:
    data = _load_json_file(result)
    if data is _MISSING or not isinstance(data, dict):
        return 0.0
    return float(all(k in data and data[k] == v for k, v in expected["expected"].items()))


def check_json_keybindings(result: str | None, expected: dict, **_: Any) -> float:
    data = _load_json_file(result, skip_first_line=True)  # VS Code writes a `//` header line
    if data is _MISSING or not isinstance(data, list):
        return 0.0
    return float(expected["expected"] in data)


def _json_subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _json_subset(v, big[k]) for k, v in small.items())
    return small == big


def compare_config(result: str | None, rules: dict, containment_ok: bool = True, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    ref = rules["expected"]
    try:
        got, want = json.loads(text), json.loads(ref)
        return float(_json_subset(want, got) if containment_ok else got == want)
    except (json.JSONDecodeError, TypeError):
        return float(ref in text if containment_ok else text == ref)


def compare_answer(result: Any, rules: dict, **_: Any) -> float:
    return float(result is not None and result == rules["expected"])


def is_extension_installed(result: str | None, rules: dict, **_: Any) -> float:
    text = result or ""
    if rules["type"] == "contain":
        return float(rules["expected"] in text)
    if rules["type"] == "not_contain":
        return float(rules["expected"] not in text)
    raise Unsupported(f"is_extension_installed type {rules['type']!r}")


def check_file_exists(directory: str, filename: str, **_: Any) -> float:
    return float(os.path.isfile(os.path.join(directory, filename)))


# ---- chrome.py -------------------------------------------------------------------------------
def is_expected_tabs(open_tabs: list[dict] | None, rule: dict, **_: Any) -> float:
    if rule.get("type") != "url":
        raise Unsupported(f"is_expected_tabs type {rule.get('type')!r}")
    if not open_tabs:
        return 0.0
    urls = rule["urls"]
    if len(open_tabs) != len(urls):
        return 0.0
    return float(all(any(compare_urls(t["url"], u) for t in open_tabs) for u in urls))


def _url_of(info: Any) -> str | None:
    return info.get("url") if isinstance(info, dict) else info


def is_expected_active_tab(active_tab_info: Any, rule: dict, **_: Any) -> float:
    if rule.get("type") != "url":
        raise Unsupported(f"is_expected_active_tab type {rule.get('type')!r}")
    actual = _url_of(active_tab_info)
    return float(actual is not None and compare_urls(rule["url"], actual))


def is_expected_active_tab_approximate(active_tab_info: Any, rule: dict, **_: Any) -> float:
    actual = _url_of(active_tab_info)
    if actual is None:
        return 0.0
    return float(actual.split("?")[0] == rule["url"].split("?")[0])


def is_expected_url_pattern_match(result: Any, rules: dict, **_: Any) -> float:
    url = _url_of(result)
    if not url:
        return 0.0
    return float(all(re.search(p, url) for p in rules["expected"]))


def is_expected_search_query(active_tab_info: Any, rules: dict, **_: Any) -> float:
    url = _url_of(active_tab_info)
    return float(bool(url) and re.search(rules["expect"]["pattern"], url) is not None)


def is_expected_bookmarks(bookmarks: dict | None, rule: dict, **_: Any) -> float:
    if not bookmarks:
        return 0.0
    bar = bookmarks.get("bookmark_bar", {}).get("children", [])
    kind = rule["type"]
    if kind == "bookmark_bar_folders_names":
        names = {b["name"] for b in bar if b.get("type") == "folder"}
        return float(names == set(rule["names"]))
    if kind == "bookmark_bar_websites_urls":
        urls = {b["url"] for b in bar if b.get("type") == "url"}
        return float(urls == set(rule["urls"]))
    if kind == "liked_authors_websites_urls":
        folder = next((b for b in bar if b.get("type") == "folder" and b.get("name") == "Liked Authors"), None)
        if folder is None:
            return 0.0
        urls = {b["url"] for b in folder.get("children", []) if b.get("type") == "url"}
        import itertools

        return float(any(urls == set(combo) for combo in itertools.product(*rule["urls"])))
    raise Unsupported(f"is_expected_bookmarks type {kind!r}")


def check_font_size(font_size: dict | None, rule: dict, **_: Any) -> float:
    if not font_size:
        return 0.0
    size = font_size["default_font_size"]
    if rule["type"] == "value":
        return float(size == rule["value"])
    if rule["type"] == "range":
        return float(rule["min"] < size < rule["max"])
    raise Unsupported(f"check_font_size type {rule['type']!r}")


def check_history_deleted(history: list | None, rule: dict, **_: Any) -> float:
    if rule.get("type") != "keywords":
        raise Unsupported(f"check_history_deleted type {rule.get('type')!r}")
    for row in history or []:
        if any(k in row[0] for k in rule["keywords"]):
            return 0.0
    return 1.0


def is_cookie_deleted(cookies: list | None, rule: dict, **_: Any) -> float:
    if rule.get("type") != "domains":
        raise Unsupported(f"is_cookie_deleted type {rule.get('type')!r}")
    for row in cookies or []:
        host = row[1]
        if any(compare_urls(host, d) for d in rule["domains"]):
            return 0.0
    return 1.0


def is_shortcut_on_desktop(shortcuts: dict | None, rule: dict, **_: Any) -> float:
    for content in (shortcuts or {}).values():
        fields = dict(line.split("=", 1) for line in content.splitlines() if "=" in line)
        if rule["type"] == "name":
            got, want = fields.get("Name", "").lower(), rule["name"].lower()
        elif rule["type"] == "exec":
            got, want = fields.get("Exec", ""), rule["exec"]
        else:
            raise Unsupported(f"is_shortcut_on_desktop type {rule['type']!r}")
        if got and (got == want or got in want or want in got):
            return 1.0
    return 0.0


def check_enabled_experiments(enabled: list | None, rule: dict, **_: Any) -> float:
    names = [e.split("@")[0] for e in enabled or []]
    return float(names == rule["names"])


def is_expected_installed_extensions(installed: list | None, expected: dict, **_: Any) -> float:
    return float(set(expected["expected"]) <= set(installed or []))


# ---- tables ----------------------------------------------------------------------------------
def _csv_lines(path: str) -> list[str] | None:
    for enc in ("utf-8", "utf-8-sig", "latin-1"):
        try:
            return Path(path).read_text(encoding=enc).splitlines()
        except UnicodeDecodeError:
            continue
        except OSError:
            return None
    return None


def compare_csv(result: str | None, expected: str | list[str], strict: bool = True, ignore_case: bool = False,
                **_: Any) -> float:
    if not result or not os.path.isfile(result):
        return 0.0
    got = _csv_lines(result)

    def norm(lines: list[str]) -> list[str]:
        lines = lines if strict else [ln.strip() for ln in lines]
        return [ln.lower() for ln in lines] if ignore_case else lines

    for exp in [expected] if isinstance(expected, str) else expected:
        want = _csv_lines(exp) if exp else None
        if got is not None and want is not None and norm(got) == norm(want):
            return 1.0
    return 0.0


def _workbook(path: str):
    import openpyxl

    if path.endswith(".csv"):
        wb = openpyxl.Workbook()
        ws = wb.active
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.reader(f):
                ws.append([_number(v) for v in row])
        return wb
    return openpyxl.load_workbook(path, data_only=True)


def _number(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _sheet(index: Any, result_wb, expected_wb):
    """OSWorld's sheet index grammar: int (result by index), RI<n>/RN<name>, EI<n>/EN<name>."""
    if isinstance(index, int):
        return result_wb.worksheets[index]
    book = {"R": result_wb, "E": expected_wb}[index[0]]
    if book is None:
        raise ValueError(f"sheet {index!r} refers to the expected workbook, which the task does not give")
    if index[1] == "I":
        return book.worksheets[int(index[2:])]
    return book[index[2:]]


def _sheet_values(ws, precision: int = 4) -> list[tuple]:
    rows = []
    for row in ws.iter_rows(values_only=True):
        rows.append(tuple(round(v, precision) if isinstance(v, float) else v for v in row))
    while rows and all(v is None for v in rows[-1]):
        rows.pop()
    width = max((max((i + 1 for i, v in enumerate(r) if v is not None), default=0) for r in rows), default=0)
    return [tuple(r[:width]) + (None,) * (width - len(r[:width])) for r in rows]


def compare_table(result: str | None, expected: str | None = None, rules: list[dict] | None = None,
                  **_: Any) -> float:
    """xlsx/csv comparison with openpyxl: sheet_name, sheet_data, check_cell, freeze, zoom rules."""
    if not result or not os.path.isfile(result):
        return 0.0
    result_wb = _workbook(result)
    expected_wb = _workbook(expected) if expected else None
    if rules is None:
        rules = [{"type": "sheet_data", "sheet_idx0": "RI0", "sheet_idx1": "EI0"}]
    for r in rules:
        kind = r["type"]
        if kind == "sheet_name":
            ok = expected_wb is not None and result_wb.sheetnames == expected_wb.sheetnames
        elif kind == "sheet_data":
            a = _sheet(r["sheet_idx0"], result_wb, expected_wb)
            b = _sheet(r["sheet_idx1"], result_wb, expected_wb)
            ok = _sheet_values(a, r.get("precision", 4)) == _sheet_values(b, r.get("precision", 4))
        elif kind == "check_cell":
            ws = _sheet(r["sheet_idx"], result_wb, expected_wb)
            cell = ws[r["coordinate"]]
            props = r["props"]
            ok = True
            if "value" in props:
                ok = match_value_to_rule(cell.value, props["value"])
            if ok and set(props) - {"value"}:
                raise Unsupported(f"check_cell props {sorted(set(props) - {'value'})}")
        elif kind == "freeze":
            a = _sheet(r["sheet_idx0"], result_wb, expected_wb)
            b = _sheet(r["sheet_idx1"], result_wb, expected_wb)
            ok = a.freeze_panes == b.freeze_panes
        elif kind == "zoom":
            ws = _sheet(r["sheet_idx"], result_wb, expected_wb)
            zoom = ws.sheet_view.zoomScale or 100
            ok = match_value_to_rule(zoom, {"method": r["method"], "ref": r["ref"]})
        else:
            raise Unsupported(f"compare_table rule {kind!r}")
        if not ok:
            return 0.0
    return 1.0


# ---- app config files ------------------------------------------------------------------------
def check_config_status(result: str | None, rule: dict, **_: Any) -> float:
    """gimprc: a non-comment `(key … value)` line whose first token(s) match and last token is value."""
    text = _read_text(result)
    if text is None:
        return 0.0
    keys = rule["key"] if isinstance(rule["key"], list) else [rule["key"]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.strip("()").split()
        if tokens[: len(keys)] == keys and tokens[-1] == str(rule["value"]):
            return 1.0
    return 0.0


def is_vlc_recordings_folder(result: str | None, rule: dict, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    for line in text.splitlines():
        if line.startswith("#") or "input-record-path" not in line:
            continue
        return float(line.split("=", 1)[1].strip() == rule["recording_file_path"])
    return 0.0


def check_libre_locale(result: str | None, rules: dict, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    for prop in ("ooSetupSystemLocale", "ooLocale"):
        m = re.search(rf'<prop oor:name="{prop}"[^>]*>\s*<value>([^<]*)</value>', text)
        if m and m.group(1):
            return float(any(fnmatch.fnmatchcase(m.group(1), pat) for pat in rules["locale_set"]))
    return 0.0


def check_auto_saving_time(result: str | None, rules: dict, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    m = re.search(r'<item oor:path="/org\.openoffice\.Office\.Common/Save/Document">'
                  r'<prop oor:name="AutoSaveTimeIntervall"[^>]*><value>(\d+)</value>', text)
    return float(m is not None and int(m.group(1)) == int(rules["minutes"]))


def check_thunderbird_prefs(result: str | None, rule: dict, **_: Any) -> float:
    text = _read_text(result)
    if text is None:
        return 0.0
    prefs = {}
    for m in re.finditer(r'user_pref\("([^"]+)",\s*(.+?)\);\s*$', text, re.M):
        try:
            prefs[m.group(1)] = json.loads(m.group(2))
        except json.JSONDecodeError:
            prefs[m.group(1)] = m.group(2)
    for key, r in rule.get("expect", {}).items():
        if not match_value_to_rule(prefs.get(key), r):
            return 0.0
    for key, r in rule.get("unexpect", {}).items():
        if match_value_to_rule(prefs.get(key), r):
            return 0.0
    return 1.0


METRICS: dict[str, Callable[..., float]] = {
    f.__name__: f
    for f in (
        check_include_exclude, exact_match, match_in_list, is_in_list, literal_match, fuzzy_match,
        diff_text_file, check_list, check_csv, check_json, check_direct_json_object, run_sqlite3,
        file_contains, check_line_number, compare_terminal_and_txt, compare_python_pure_text,
        is_included_all_json_objects, check_gnome_favorite_apps, is_utc_0, check_text_enlarged,
        check_moved_jpgs, is_in_vm_clickboard, compare_text_file, check_json_settings,
        check_json_keybindings, compare_config, compare_answer, is_extension_installed, check_file_exists,
        is_expected_tabs, is_expected_active_tab, is_expected_active_tab_approximate,
        is_expected_url_pattern_match, is_expected_search_query, is_expected_bookmarks, check_font_size,
        check_history_deleted, is_cookie_deleted, is_shortcut_on_desktop, check_enabled_experiments,
        is_expected_installed_extensions, compare_csv, compare_table, check_config_status,
        is_vlc_recordings_folder, check_libre_locale, check_auto_saving_time, check_thunderbird_prefs,
    )
}
