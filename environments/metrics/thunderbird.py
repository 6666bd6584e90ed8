"""Thunderbird metrics (OSWorld `metrics/thunderbird.py`): prefs.js, msgFilterRules.dat, mbox folders."""

from __future__ import annotations

import json
import re
from typing import Any

from environments.metrics.general import read_text
from environments.metrics.rules import match_record, match_value_to_rule

_PREF = re.compile(r'^user_pref\("(?P<key>(?:[^"]|\\")+)\", (?P<val>.+)\);$')
_CONDITION = re.compile(r'\b(?:AND|OR) \((?:[\w ]+),(?:[\w \']+),(?:"(?:(?:[^"]|\")+)"|(?:[^)]+))\)|\bALL\b')


def _lines(path: str) -> list[str] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return list(f)
    except (OSError, UnicodeDecodeError):
        return None


def check_thunderbird_prefs(result: str | None, rule: dict) -> float:
    """Each `expect` pref (the last `user_pref("k", v);` line for it) matches its rule, no `unexpect`
    pref does; a pref never set fails its `expect`. A missing file scores 0 (OSWorld: raises)."""
    if result is None:
        return 0.0
    expect, unexpect = rule.get("expect", {}), rule.get("unexpect", {})
    found = {k: False for k in expect}
    clean = True
    lines = _lines(result)
    if lines is None:
        return 0.0
    for line in lines:
        m = _PREF.match(line.strip())
        if m is None:
            continue
        key = m.group("key")
        try:
            value = json.loads(m.group("val"))
        except json.JSONDecodeError:  # OSWorld: raises
            return 0.0
        if key in expect:
            found[key] = match_value_to_rule(value, expect[key])
        elif key in unexpect:
            clean = clean and not match_value_to_rule(value, unexpect[key])
    return float(all(found.values()) and clean)


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\\\", "\\")


def check_thunderbird_filter(result: str | None, rules: dict) -> float:
    """Each `expect` record matches some filter of msgFilterRules.dat (name, enabled, type, action,
    actionValue, condition list), no filter matches an `unexpect` record."""
    if result is None:
        return 0.0
    lines = _lines(result)
    if lines is None:
        return 0.0
    filters: list[dict] = []
    current: dict[str, Any] = {}
    fields = (("name=", "name", 6), ("enabled=", "enabled", 9), ("type=", "type", 6), ("action=", "action", 8),
              ("actionValue=", "actionValue", 13))
    for line in lines:
        for prefix, key, start in fields:
            if line.startswith(prefix):
                if key == "name":
                    current = {}
                current[key] = _unescape(line[start:-2])
                break
        else:
            if line.startswith("condition="):
                current["condition"] = _CONDITION.findall(_unescape(line[11:-2]))
                filters.append(current)
    expect, unexpect = rules.get("expect", []), rules.get("unexpect", [])
    found = [any(match_record(r, f) for f in filters) for r in expect]
    clean = not any(match_record(r, f) for f in filters for r in unexpect)
    return float(all(found) and clean)


def check_thunderbird_folder(result: str | list | None, reference: str | list, **options: Any) -> float:
    """Mailbox files equal as sets of messages.

    OSWorld keeps only the blank pieces of `data.split("FROM - ")` (its test is inverted), so every
    readable pair of files compares equal; kept, since that is the score OSWorld gives. A missing
    result scores 0."""
    def messages(path: str) -> str:
        data = read_text(path).strip()
        kept = []
        for mail in data.split("FROM - "):
            if mail.strip():
                continue
            if options.get("remove_deleted", True) and re.search(r"X-Mozilla-Status: 000[89]", mail):
                continue
            kept.append("FROM - " + mail.strip())
        if options.get("remove_duplicate", True):
            kept = set(kept)
        return "\n".join(sorted(kept))

    if type(reference) is not list:
        result, reference = [result], [reference]
    for pred, gold in zip(result, reference):
        if pred is None:
            return 0.0
        try:
            got = messages(pred)
        except (OSError, UnicodeDecodeError):
            return 0.0
        if got != messages(gold):
            return 0.0
    return 1.0


METRICS = {f.__name__: f for f in (check_thunderbird_prefs, check_thunderbird_filter, check_thunderbird_folder)}
