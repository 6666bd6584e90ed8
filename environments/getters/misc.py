"""Rule getters (OSWorld `getters/misc.py`): a rule as given, a rule with relative dates made absolute,
a time range."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, tzinfo
from typing import Any

from environments.controller import Controller

_DOW = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_FULL = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December")


def get_rule(c: Controller, cfg: dict) -> Any:
    return cfg["rules"]


def get_time_diff_range(c: Controller, cfg: dict) -> Any:
    return cfg.get("diff_range_in_minutes")


def format_day(fmt: str, day: datetime) -> str:
    """OSWorld's placeholders, each replaced once: {DoW} Mon, {Month} Jan, {DayD} 5, {Year} 2026,
    {Month0D} 01, {month} january, {MonthFull} January, {Day0D} 05, {MonthD} 1."""
    for key, value in (("{DoW}", _DOW[day.weekday()]), ("{Month}", _MONTH[day.month - 1]), ("{DayD}", str(day.day)),
                       ("{Year}", str(day.year)), ("{Month0D}", f"{day.month:02d}"),
                       ("{month}", _MONTH_FULL[day.month - 1].lower()), ("{MonthFull}", _MONTH_FULL[day.month - 1]),
                       ("{Day0D}", f"{day.day:02d}"), ("{MonthD}", str(day.month))):
        fmt = fmt.replace(key, value, 1)
    return fmt


def _nth_next_month(now: datetime, day: int, tz: tzinfo) -> datetime:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, day, tzinfo=tz)


def _first_monday_later(now: datetime, months: int, wraps_from: int, tz: tzinfo) -> datetime:
    # OSWorld's arithmetic, kept: month (now + n) % 12 is 0 for December and then datetime() raises.
    year = now.year + 1 if now.month >= wraps_from else now.year
    first = datetime(year, (now.month + months) % 12, 1, tzinfo=tz)
    return first + timedelta(days=((6 - first.weekday()) + 1) % 7)


def _from_day(phrase: str, now: datetime, tz: tzinfo, alone: bool) -> datetime:
    """The day a `from` phrase names (`alone`: the rule has no `to`, where OSWorld knows fewer phrases)."""
    wd = now.weekday()
    if phrase == "tomorrow":
        return now + timedelta(days=1)
    if phrase == "5th next month" and alone:
        return _nth_next_month(now, 5, tz)
    if phrase == "10th next month":
        return _nth_next_month(now, 10, tz)
    if phrase == "this month" and alone:
        return now
    if phrase == "next Monday" or (phrase == "next Monday split" and not alone):
        return now + timedelta(days=(6 - wd) + 1)
    if alone and phrase == "first monday four months later":
        return _first_monday_later(now, 4, 9, tz)
    if alone and phrase == "first monday eight months later":
        return _first_monday_later(now, 8, 5, tz)
    if not alone:
        if phrase == "this Saturday":
            return now + timedelta(days=5 - wd)
        if phrase == "next Friday":
            return now + timedelta(days=4 - wd if wd < 4 else 7 if wd == 4 else (7 - wd) + 4)
        if phrase == "next Saturday":
            return now + timedelta(days=5 - wd if wd < 5 else 7 if wd == 5 else 6)
        if phrase in ("next week Friday", "next week Saturday", "next week Sunday"):
            offset = {"next week Friday": 4, "next week Saturday": 5, "next week Sunday": 6}[phrase]
            return now + timedelta(days=(7 - wd) + offset)
    from environments.metrics import Unsupported

    raise Unsupported(f"rule_relativeTime: relative time {phrase!r}" + ("" if alone else " as 'from'"))


def _to_day(phrase: str, from_phrase: str, from_day: datetime, now: datetime, tz: tzinfo) -> datetime:
    wd = now.weekday()
    if phrase == "tomorrow":
        return now + timedelta(days=1)
    if phrase == "this Sunday":
        return now + timedelta(days=6 - wd)
    if phrase == "11th next month":
        return _nth_next_month(now, 11, tz)
    if phrase in ("next Friday", "next Friday split"):
        if from_phrase in ("next Monday", "next Monday split"):
            return from_day + timedelta(days=4)
        return now + timedelta(days=4 - wd if wd < 4 else (6 - wd) + 5)
    if phrase == "next Sunday":
        if from_phrase in ("next Friday", "next Saturday"):
            return from_day + timedelta(days=6 - from_day.weekday())
        return now + timedelta(days=6 - wd if wd < 6 else 7)
    if phrase == "next week Sunday":
        if from_phrase in ("next week Friday", "next week Saturday"):
            return from_day + timedelta(days=6 - from_day.weekday())
        return now + timedelta(days=(7 - wd) + 6)
    from environments.metrics import Unsupported

    raise Unsupported(f"rule_relativeTime: relative time {phrase!r} as 'to'")


def _timezone(rules: dict) -> tzinfo:
    """The rule's `timezone`, else this machine's. (OSWorld asks an IP-geolocation service, falling
    back to UTC; offline the machine's own zone is the nearest equivalent.)"""
    if "timezone" in rules:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(rules["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            from datetime import timezone

            return timezone.utc
    return datetime.now().astimezone().tzinfo


def resolve_relative_time(rules: dict, now: datetime | None = None) -> dict:
    """`rules` with the `expected` date formats filled for `relativeTime` {from[, to]} (see format_day).

    With only `from`, `expected["time"]` is filled; with `to` too, `expected["from"]`/`["to"]`, or the
    split day/month/year keys (puDay/puMonth/puYear, doDay/doMonth/doYear) for the "split" phrases.
    """
    rules = copy.deepcopy(rules)
    tz = _timezone(rules)
    now = now if now is not None else datetime.now(tz)
    relative, expected = rules["relativeTime"], rules["expected"]
    start = relative["from"]
    if "to" not in relative:
        expected["time"] = format_day(expected["time"], _from_day(start, now, tz, alone=True))
        return rules
    from_day = _from_day(start, now, tz, alone=False)
    if start == "next Monday split":
        for key in ("puDay", "puMonth", "puYear"):
            expected[key] = format_day(expected[key], from_day)
    else:
        expected["from"] = format_day(expected["from"], from_day)
    end = relative["to"]
    to_day = _to_day(end, start, from_day, now, tz)
    if end == "next Friday split":
        for key in ("doDay", "doMonth", "doYear"):
            expected[key] = format_day(expected[key], to_day)
    else:
        expected["to"] = format_day(expected["to"], to_day)
    return rules


def get_rule_relativeTime(c: Controller, cfg: dict) -> dict:
    return resolve_relative_time(cfg["rules"])


GETTERS = {"rule": get_rule, "rule_relativeTime": get_rule_relativeTime, "time_diff_range": get_time_diff_range}
