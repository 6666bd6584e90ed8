"""Rule helpers every OSWorld metric family shares (OSWorld `metrics/utils.py`): value rules, record
patterns, URL comparison.

These raise where OSWorld's raise (a regex rule on a non-string, a range rule on None), because the
metrics that call them catch those errors in OSWorld's places and score accordingly.
"""

from __future__ import annotations

import builtins
import functools
import operator
import re
from typing import Any, Callable
from urllib.parse import ParseResult, urlparse, urlunparse


class Unsupported(Exception):
    """The metric cannot evaluate this case here (reported as skipped: unsupported, never scored)."""


def match_value_to_rule(value: Any, rule: dict) -> bool:
    """`{"method": m, "ref": r}` with m one of re[.FLAG…], eq/ne/le/lt/ge/gt, approx:T,
    spreadsheet_range, range.XY (X, Y in {t, e}: ref[0] <X value <Y ref[1]), str_list_eq, str_set_eq."""
    method: str = rule["method"]
    ref = rule["ref"]
    if method.startswith("re"):
        flags = functools.reduce(operator.or_, (getattr(re, f) for f in method.split(".")[1:]), re.RegexFlag(0))
        return re.search(ref, value, flags) is not None
    if method in ("eq", "ne", "le", "lt", "ge", "gt"):
        return getattr(operator, method)(value, ref)
    if method.startswith("approx"):
        threshold = float(method.split(":")[1])
        try:
            value = float(value)
        except (ValueError, TypeError):
            return False
        return abs(value - ref) <= threshold
    if method == "spreadsheet_range":
        from openpyxl.worksheet.cell_range import MultiCellRange

        def within(inner, outer) -> bool:
            return all(r in outer for r in inner)

        return within(MultiCellRange(ref[0]), value) and within(value, MultiCellRange(ref[1]))
    if method.startswith("range."):
        low, high = method[6], method[7]
        return getattr(operator, "l" + low)(ref[0], value) and getattr(operator, "l" + high)(value, ref[1])
    if method in ("str_list_eq", "str_set_eq"):
        container = getattr(builtins, method[4:-3])
        return container(value.strip("\"'").split(",")) == container(ref)
    raise Unsupported(f"rule method {method!r}")


def match_record(pattern: dict, item: dict) -> bool:
    return all(k in item and item[k] == v for k, v in pattern.items())


def lists_match(expected: list, actual: list, same: Callable[[Any, Any], bool]) -> bool:
    """Same length, and every expected item is `same` as some actual item (OSWorld `are_lists_equal`)."""
    return len(expected) == len(actual) and all(any(same(e, a) for a in actual) for e in expected)


@functools.lru_cache(maxsize=1)
def _tld_extractor():
    import tldextract

    # The bundled public-suffix snapshot only: never fetch the list from the internet.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+\-.]*://")


def normalize_url(url: str, full: bool = True) -> str:
    """http:// when there is no scheme; lower-case scheme and host; host without its public suffix
    and without a lone `www`; a `/` path dropped; params/query/fragment kept only if `full`."""
    p = urlparse(url if _SCHEME.match(url) else "http://" + url)
    ext = _tld_extractor()(p.netloc.lower())
    sub = "" if ext.subdomain == "www" else ext.subdomain
    host = f"{sub}.{ext.domain}" if sub else ext.domain
    return urlunparse(ParseResult(scheme=p.scheme.lower(), netloc=host, path="" if p.path == "/" else p.path,
                                  params=p.params if full else "", query=p.query if full else "",
                                  fragment=p.fragment if full else ""))


def compare_urls(url1: str | None, url2: str | None, full: bool = True) -> bool:
    """Same site and path (`airbnb.com` == `www.airbnb.com.sg`); None only equals None."""
    if url1 is None or url2 is None:
        return url1 == url2
    return normalize_url(url1, full) == normalize_url(url2, full)
