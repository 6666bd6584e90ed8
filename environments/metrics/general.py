"""General metrics (OSWorld `metrics/general.py`): strings, text files, CSV/JSON records, SQLite,
accessibility trees.

Where OSWorld's code raises on the agent's output (no file, a file that does not parse), these score 0
and say so in their docstring; the differential test lists each such case.
"""

from __future__ import annotations

import csv
import datetime
import difflib
import json
import operator
import os
import re
import sqlite3
from typing import Any

from environments.metrics.rules import Unsupported, match_record, match_value_to_rule


def read_text(path: str) -> str:
    """A text file as OSWorld's `open(path).read()` on a UTF-8 host (universal newlines)."""
    with open(path, encoding="utf-8") as f:
        return f.read()


def readable(path: Any) -> bool:
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(path)


def check_include_exclude(result: Any, rules: dict) -> float:
    if result is None:
        return 0.0
    include, exclude = rules.get("include", []), rules.get("exclude", [])
    return float(all(s in result for s in include) and all(s not in result for s in exclude))


def exact_match(result: Any, rules: dict) -> float:
    return float(result == rules["expected"])


def match_in_list(result: Any, rules: dict) -> float:
    return float(result in rules["expected"])


def is_in_list(result: Any, rules: dict) -> float:
    """`expected in result`; a None result scores 0 (OSWorld: TypeError)."""
    if result is None:
        return 0.0
    return float(rules["expected"] in result)


def literal_match(result: Any, expected: Any, **options: Any) -> float:
    kind = options.get("type", "str")
    ignore_case = options.get("ignore_case", False)

    def s(v: Any) -> str:
        return str(v).lower() if ignore_case else str(v)

    if kind == "str":
        return float(s(result) == s(expected))
    if kind == "list":
        if type(result) not in (list, tuple) or type(expected) not in (list, tuple) or len(result) != len(expected):
            return 0.0
        return float([s(v) for v in result] == [s(v) for v in expected])
    raise Unsupported(f"literal_match type {kind!r}")


def fuzzy_match(result: Any, rules: dict) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(result, rules["expected"]) / 100.0


def diff_text_file(result: str | None, expected: str) -> float:
    """difflib ratio of the two files' lines; a missing or non-UTF-8 result scores 0 (OSWorld: raises)."""
    if result is None:
        return 0.0
    try:
        got = read_text(result).splitlines()
    except (OSError, UnicodeDecodeError):
        return 0.0
    return difflib.SequenceMatcher(a=got, b=read_text(expected).splitlines()).ratio()


def fuzzy_place_math(result: str | None, rules: dict) -> float:
    """Best fuzz ratio of each word of a .docx against the answers; exactly 3 words or 0."""
    from docx import Document
    from rapidfuzz import fuzz

    if result is None:
        return 0.0
    try:
        doc = Document(result)
    except Exception:  # OSWorld: raises on a missing or broken file
        return 0.0
    words = [w for p in doc.paragraphs for w in p.text.split()]
    scores = [max([fuzz.ratio(w, a) / 100 for a in rules["expected"]], default=0) for w in words]
    return sum(scores) / 3 if len(scores) == 3 else 0.0


def check_csv(result: str | None, rules: dict) -> float:
    """Each `expect` record matches some row, no row matches an `unexpect` record; a missing or
    non-UTF-8 file scores 0 (OSWorld: raises)."""
    if result is None:
        return 0.0
    expect, unexpect = rules.get("expect", []), rules.get("unexpect", [])
    found = [False] * len(expect)
    clean = True
    try:
        with open(result, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                found = [hit or match_record(r, row) for hit, r in zip(found, expect)]
                clean = clean and not any(match_record(r, row) for r in unexpect)
    except (OSError, UnicodeDecodeError):
        return 0.0
    return float(all(found) and clean)


def check_list(result: str | None, rules: dict) -> float:
    """Each `expect` regex finds some line, no `unexpect` regex finds any; a missing or non-UTF-8
    file scores 0 (OSWorld: raises). Lines keep their newline, as OSWorld iterates the file."""
    if result is None:
        return 0.0
    expect = [re.compile(p) for p in rules.get("expect", [])]
    unexpect = [re.compile(p) for p in rules.get("unexpect", [])]
    found = [False] * len(expect)
    clean = True
    try:
        with open(result, encoding="utf-8") as f:
            for line in f:
                found = [hit or r.search(line) is not None for hit, r in zip(found, expect)]
                clean = clean and all(r.search(line) is None for r in unexpect)
    except (OSError, UnicodeDecodeError):
        return 0.0
    return float(all(found) and clean)


A11Y_NAMESPACES = {
    "ubuntu": {k: f"https://accessibility.ubuntu.example.org/ns/{v}" for k, v in {
        "st": "state", "attr": "attributes", "cp": "component", "doc": "document",
        "docattr": "document/attributes", "txt": "text", "val": "value", "act": "action"}.items()},
    "windows": {k: f"https://accessibility.windows.example.org/ns/{v}" for k, v in {
        "st": "state", "attr": "attributes", "cp": "component", "doc": "document",
        "docattr": "document/attributes", "txt": "text", "val": "value", "act": "action",
        "class": "class"}.items()},
    "macos": {k: f"https://accessibility.macos.example.org/ns/{v}" for k, v in {
        "st": "state", "attr": "attributes", "cp": "component", "doc": "document", "txt": "text",
        "val": "value", "act": "action", "role": "role"}.items()},
}


def check_accessibility_tree(result: str | None, rules: list[dict], osname: str = "ubuntu") -> float:
    """Product over rules: no matching element → 0; with `text`, the best match (equality when
    `exact`, else fuzz ratio). An unparsable tree scores 0 (OSWorld: raises)."""
    import lxml.etree
    from lxml.cssselect import CSSSelector
    from rapidfuzz import fuzz

    namespaces = A11Y_NAMESPACES[osname]
    try:
        tree = lxml.etree.fromstring(result)
    except (ValueError, TypeError, lxml.etree.XMLSyntaxError):
        return 0.0
    total = 1.0
    for r in rules:
        if "xpath" in r:
            elements = tree.xpath(r["xpath"], namespaces=namespaces)
        elif "selectors" in r:
            elements = CSSSelector(", ".join(r["selectors"]), namespaces=namespaces)(tree)
        else:
            raise Unsupported("check_accessibility_tree rule without xpath or selectors")
        if len(elements) == 0:
            return 0.0
        if "text" in r:
            same = operator.eq if r["exact"] else (lambda a, b: fuzz.ratio(a, b) / 100.0)
            score = 0
            for element in elements:
                score = max(score, same(r["text"], element.text or None))
        else:
            score = 1.0
        total *= score
    return float(total)


def run_sqlite3(result: str | None, rules: dict) -> float:
    """First column of the query's first row; no database file (or no row) scores 0 (OSWorld: raises)."""
    if not readable(result):
        return 0.0
    connection = sqlite3.connect(result)
    try:
        row = connection.execute(rules["sql"]).fetchone()
    except sqlite3.DatabaseError:
        return 0.0
    finally:
        connection.close()
    return float(row[0] or 0) if row is not None else 0.0


_MISSING = object()


def check_json(result: str | None, rules: dict, is_yaml: bool = False) -> float:
    if result is None or not os.path.exists(result):
        return 0.0
    try:
        with open(result, encoding="utf-8") as f:
            if is_yaml:
                import yaml

                data = yaml.safe_load(f)
                if data is None:
                    return 0.0
            else:
                data = json.load(f)
    except Exception:
        return 0.0

    metric = True
    for r in rules.get("expect", {}):
        try:
            value = data
            for k in r["key"]:
                try:
                    value = value[k]
                except (KeyError, TypeError):
                    return 0.0
            metric = metric and match_value_to_rule(value, r)
        except Exception:  # OSWorld scores 0 here, an unknown rule method included
            return 0.0
    for r in rules.get("unexpect", {}):
        try:
            value = data
            for k in r["key"]:
                try:
                    value = value[k]
                except (KeyError, TypeError):
                    value = None
                    break
            metric = metric and not match_value_to_rule(value, r)
        except Exception:
            return 0.0
    return float(metric)


def check_direct_json_object(result: Any, rules: dict) -> float:
    """Compare a JSON object (or its text, `'` read as `"`) with `rules["expected"]`.

    Default: every expected key equal (`ignore_list_order` sorts, for every key, as OSWorld does:
    so a boolean flag among the keys makes the comparison fail). `expect_in_result`: a list ref
    needs one of its items in (or equal to) the result's value, a string ref needs to be a substring.
    Text that is not JSON scores 0 (OSWorld: raises).
    """
    if isinstance(result, str):
        try:
            result = json.loads(result.strip().replace("'", '"'))
        except json.JSONDecodeError:
            return 0.0
    if result is None:
        return 0.0
    try:
        expected = rules.get("expected", {})
        if expected:
            if any(v == "__EVALUATION_FAILED__" for v in expected.values()):
                return 0.0
    except Exception:
        return 0.0
    try:
        expected = rules["expected"]
        if not rules.get("expect_in_result", False):
            for key in expected.keys():
                want, got = expected.get(key), result.get(key)
                if expected.get("ignore_list_order", False):
                    if sorted(want) != sorted(result.get(key)):
                        return 0.0
                elif want != got:
                    return 0.0
            return 1.0
        for key in expected.keys():
            want, got = expected.get(key), result.get(key)
            if isinstance(want, list):
                if not any((isinstance(got, list) and w in got) or (isinstance(got, str) and w == got)
                           for w in want):
                    return 0.0
            elif isinstance(want, str):
                if want not in got:
                    return 0.0
            else:
                return 0.0
        return 1.0
    except Exception:
        return 0.0


def compare_time_in_speedtest_results(result: str | None, time_diff: Any) -> float:
    """The HH:MM at the end of the second CSV line's second field is within `time_diff` minutes of now."""
    if not result:
        return 0.0
    try:
        with open(result, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i == 1:
                    date = line.split(",")[1]
                    break
            now = datetime.datetime.strptime(datetime.datetime.now().strftime("%H:%M"), "%H:%M")
            then = datetime.datetime.strptime(date[-5:], "%H:%M")
            if not abs((then - now).total_seconds()) / 60 < int(time_diff):
                return 0.0
        return 1.0
    except Exception:
        return 0.0


def is_included_all_json_objects(gold: str | None, result: str | None) -> float:
    """Every key of the gold JSON file present in the result file with the same value; a missing or
    broken result scores 0 (OSWorld: raises)."""
    if not gold or not result:
        return 0.0
    with open(gold, encoding="utf-8") as f:
        want = json.load(f)
    try:
        with open(result, encoding="utf-8") as f:
            got = json.load(f)
        return float(all(k in got.keys() and want[k] == got[k] for k in want.keys()))
    except (OSError, ValueError, AttributeError):
        return 0.0


def file_contains(result: str | None, rules: dict) -> float:
    if not result:
        return 0.0
    try:
        text = read_text(result)
        return float(all(s in text for s in rules["expected"]))
    except Exception:
        return 0.0


_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)")


def check_line_number(result: str | None, rules: dict) -> float:
    if result is None or not os.path.isfile(result):
        return 0.0
    try:
        with open(result, encoding="utf-8") as f:
            count = sum(1 for line in f if _TIME.search(line))
        return float(count == int(rules["expected"]))
    except Exception:
        return 0.0


def compare_terminal_and_txt(result: str | None, terminal_output: str | None) -> float:
    """The file's text equals the terminal's; a missing result scores 0 (OSWorld: raises)."""
    if not result or not terminal_output:
        return 0.0
    try:
        return float(terminal_output == read_text(result))
    except (OSError, UnicodeDecodeError):
        return 0.0


_PY_HEADER = ("#!", "# -*- coding:", "# coding:", "# coding=")


def _python_body(text: str) -> str:
    """Shebang/coding lines among the first three dropped; blank lines dropped; tabs → 4 spaces."""
    lines = text.splitlines()
    i = 0
    while i < min(3, len(lines)) and lines[i].strip().startswith(_PY_HEADER):
        i += 1
    return "\n".join(line.expandtabs(4).rstrip() for line in lines[i:] if line.strip())


def compare_python_pure_text(result: str | None, gold: str | None) -> float:
    if not result or not gold:
        return 0.0
    try:
        return float(_python_body(read_text(result)) == _python_body(read_text(gold)))
    except Exception:
        return 0.0


METRICS = {f.__name__: f for f in (
    check_include_exclude, exact_match, match_in_list, is_in_list, literal_match, fuzzy_match, diff_text_file,
    fuzzy_place_math, check_csv, check_list, check_accessibility_tree, run_sqlite3, check_json,
    check_direct_json_object, compare_time_in_speedtest_results, is_included_all_json_objects, file_contains,
    check_line_number, compare_terminal_and_txt, compare_python_pure_text,
)}
