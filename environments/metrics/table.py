"""Spreadsheet metrics (OSWorld `metrics/table.py`): `compare_table` and its rules, `compare_csv`.

`compare_table` reads each workbook three ways, as OSWorld does: pandas (`sheet_data`: values as
`pandas.read_excel` sees them, compared with `DataFrame.round(p).equals`, so `"1"` stored as text
equals 1 and "N/A" equals an empty cell), openpyxl (styles, freeze panes, charts, pivots, ...), and
the raw sheet XML (`check_cell` values, `sheet_fuzzy`), plus CSV exports for `sheet_print`.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from environments.metrics.rules import Unsupported, match_value_to_rule
from environments.metrics.xlsx import (load_charts, load_filters, load_pivot_tables, load_rows_or_cols,
                                       load_sparklines, load_xlsx_styles, read_cell_style, read_cell_value)

TABLE_RULE_TYPES = frozenset({"sheet_name", "sheet_data", "sheet_print", "sheet_fuzzy", "sparkline", "chart",
                              "pivot_table", "filter", "row_props", "col_props", "style", "freeze", "zoom",
                              "data_validation", "check_cell"})
# OSWorld tries these in order; latin-1 decodes anything, so the later ones are never reached.
_ENCODINGS = ("utf-8", "utf-8-sig", "latin-1")


def read_lines(path: str) -> list[str]:
    """A text file's lines, as OSWorld's `_safe_read_file` decodes it (OSError if unreadable)."""
    for encoding in _ENCODINGS:
        try:
            with open(path, encoding=encoding) as f:
                return f.read().splitlines()
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")


def compare_csv(result: str | None, expected: str | list[str], **options: Any) -> float:
    """1 if the result's lines equal one expected file's (`strict=False` strips lines, `ignore_case` folds)."""
    if result is None:
        return 0.0
    try:
        got = read_lines(result)
    except OSError:
        return 0.0
    for exp in [expected] if isinstance(expected, str) else expected:
        try:
            want = read_lines(exp)
        except OSError:
            continue
        a, b = got, want
        if not options.get("strict", True):
            a, b = [x.strip() for x in a], [x.strip() for x in b]
        if options.get("ignore_case", False):
            a, b = [x.lower() for x in a], [x.lower() for x in b]
        if a == b:
            return 1.0
    return 0.0


class _Books:
    """One side's workbook as path, openpyxl Workbook and pandas ExcelFile, with pandas' sheet names."""

    def __init__(self, path: str | None, openpyxl_book=None, pandas_book=None):
        self.path, self.openpyxl, self.pandas = path, openpyxl_book, pandas_book
        self.names: list[str] | None = pandas_book.sheet_names if pandas_book is not None else None


def _sheet(index: int | str, result: _Books, expected: _Books) -> tuple[_Books, str]:
    """OSWorld's sheet index: int or RI<n> (result by position), RN<name>, EI<n>, EN<name>.
    A position past the end names no sheet ("")."""
    def nth(names: list[str] | None, i: Any) -> str:
        try:
            return names[int(i)]
        except Exception:
            return ""

    if isinstance(index, int):
        return result, (result.names[index] if result.names and index < len(result.names) else "")
    prefix, rest = index[:2], index[2:]
    if prefix == "RI":
        return result, nth(result.names, rest)
    if prefix == "RN":
        return result, rest
    if prefix == "EI":
        return expected, nth(expected.names, rest)
    if prefix == "EN":
        return expected, rest
    raise ValueError(f"unrecognized sheet index {index!r}")


def _frame(books: _Books, name: str):
    """pandas' view of a sheet; None when the sheet is not there."""
    import pandas as pd

    if books.pandas is None:
        raise Unsupported("sheet_data refers to the expected workbook, which the task does not give")
    try:
        return pd.read_excel(books.pandas, name)
    except Exception:
        return None


def _worksheet(books: _Books, name: str):
    if books.openpyxl is None:
        raise Unsupported("the rule refers to the expected workbook, which the task does not give")
    try:
        return books.openpyxl[name]
    except Exception:
        return None


def _printed(books: _Books, name: str) -> list[str] | None:
    """Lines of the `<book>-<sheet>.csv` export (postconfig's `libreoffice --convert-to csv`), stripped,
    trailing blank lines dropped, in reverse order (both sides alike); None if not exported."""
    if books.path is None:
        raise Unsupported("sheet_print refers to the expected workbook, which the task does not give")
    try:
        lines = read_lines(f"{os.path.splitext(books.path)[0]}-{name}.csv")
    except OSError:
        return None
    return list(itertools.dropwhile(lambda line: len(line) == 0, (line.strip() for line in reversed(lines))))


def _sheet_fuzzy(rule: dict, result: _Books, expected: _Books) -> bool:
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.cell_range import MultiCellRange
    from rapidfuzz import fuzz

    (book1, name1), (book2, name2) = _sheet(rule["sheet_idx0"], result, expected), _sheet(rule["sheet_idx1"],
                                                                                          result, expected)
    ok = True
    for rl in rule["rules"]:
        for cell_range in MultiCellRange(rl["range"]):
            for row, col in cell_range.cells:
                coordinate = f"{get_column_letter(col)}{row}"
                v1 = str(read_cell_value(book1.path, name1, coordinate))
                v2 = str(read_cell_value(book2.path, name2, coordinate))
                for old, new in rl.get("normalization", []):
                    v1, v2 = v1.replace(old, new), v2.replace(old, new)
                if "trim_leadings" in rl:
                    v1, v2 = v1.lstrip(rl["trim_leadings"]), v2.lstrip(rl["trim_leadings"])
                if "trim_trailings" in rl:
                    v1, v2 = v1.rstrip(rl["trim_trailings"]), v2.rstrip(rl["trim_trailings"])
                if "ignore_chars" in rl:
                    drop = set(rl["ignore_chars"])
                    v1, v2 = "".join(c for c in v1 if c not in drop), "".join(c for c in v2 if c not in drop)
                if rl.get("ignore_case", False):
                    v1, v2 = v1.lower(), v2.lower()
                kind = rl["type"]
                if kind == "includes":
                    metric = v2 in v1
                elif kind == "included_by":
                    metric = v1 in v2
                elif kind == "fuzzy_match":
                    metric = fuzz.ratio(v1, v2) >= rl.get("threshold", 85.0)
                elif kind == "exact_match":
                    metric = v1 == v2
                else:
                    raise Unsupported(f"sheet_fuzzy type {kind!r}")
                ok = ok and metric
    return ok


def _check_cell(rule: dict, result: _Books, expected: _Books) -> bool:
    """Each prop of one cell (value from the sheet XML, or a style) matches its rule; anything that
    goes wrong scores 0, as in OSWorld."""
    try:
        books, name = _sheet(rule["sheet_idx"], result, expected)
        sheet = _worksheet(books, name)
        if sheet is None:
            return False
        cell = sheet[rule["coordinate"]]
        ok = True
        for prop, value_rule in rule["props"].items():
            if prop == "value":
                try:
                    value = read_cell_value(books.path, name, rule["coordinate"])
                except Exception:
                    value = None
            else:
                try:
                    value = read_cell_style(prop, cell)
                except Exception:
                    value = None
            ok = ok and match_value_to_rule(value, value_rule)
        return ok
    except Exception:
        return False


class _ResultSheetMissing(Exception):
    """A rule's second sheet is a result sheet that is not there (OSWorld: raises; scored 0)."""


def compare_table(result: str | None, expected: str | None = None, **options: Any) -> float:
    """1.0 if every rule of `options["rules"]` holds, in order (stopping at the first that fails), else 0.0.

    A missing result, one that openpyxl or pandas cannot open, or a first sheet that is not there
    scores 0, as in OSWorld. A missing second sheet (OSWorld raises) scores 0 when it is the
    result's and is an error when it is the expected workbook's.
    """
    import openpyxl
    import pandas as pd

    if result is None or not os.path.exists(result):
        return 0.0
    try:
        res = _Books(result, openpyxl.load_workbook(filename=result), pd.ExcelFile(result))
    except Exception:
        return 0.0
    exp = _Books(expected, openpyxl.load_workbook(filename=expected), pd.ExcelFile(expected)) \
        if expected is not None else _Books(None)

    def second(loaded, books: _Books, index) -> Any:
        if loaded is None:
            if books is res:
                raise _ResultSheetMissing
            raise ValueError(f"sheet {index!r} is not in the expected workbook")
        return loaded

    try:
        for r in options["rules"]:
            kind = r["type"]
            if kind == "sheet_name":
                ok = res.names == exp.names
            elif kind == "sheet_data":
                precision = r.get("precision", 4)
                a = _frame(*_sheet(r["sheet_idx0"], res, exp))
                if a is None:
                    return 0.0
                books, name = _sheet(r["sheet_idx1"], res, exp)
                b = second(_frame(books, name), books, r["sheet_idx1"])
                ok = a.round(precision).equals(b.round(precision))
            elif kind == "sheet_print":
                a = _printed(*_sheet(r["sheet_idx0"], res, exp))
                if a is None:
                    return 0.0
                books, name = _sheet(r["sheet_idx1"], res, exp)
                b = _printed(books, name)
                if b is None:
                    if r.get("ignore_case", False):
                        second(None, books, r["sheet_idx1"])
                    ok = False
                else:
                    if r.get("ignore_case", False):
                        a, b = [x.lower() for x in a], [x.lower() for x in b]
                    ok = a == b
            elif kind == "sheet_fuzzy":
                ok = _sheet_fuzzy(r, res, exp)
            elif kind == "sparkline":
                books1, name1 = _sheet(r["sheet_idx0"], res, exp)
                books2, name2 = _sheet(r["sheet_idx1"], res, exp)
                ok = load_sparklines(books1.path, name1) == load_sparklines(books2.path, name2)
            elif kind in ("chart", "pivot_table", "filter", "row_props", "col_props"):
                loader = {"chart": load_charts, "pivot_table": load_pivot_tables, "filter": load_filters,
                          "row_props": load_rows_or_cols, "col_props": load_rows_or_cols}[kind]
                extra = {"obj": "row"} if kind == "row_props" else {"obj": "column"} if kind == "col_props" else {}
                sides = []
                for index in (r["sheet_idx0"], r["sheet_idx1"]):
                    books, name = _sheet(index, res, exp)
                    if books.openpyxl is None:
                        raise Unsupported(f"{kind} refers to the expected workbook, which the task does not give")
                    sides.append(loader(books.openpyxl, name, **extra, **r))
                ok = sides[0] == sides[1]
            elif kind == "style":
                sides = []
                for index in (r["sheet_idx0"], r["sheet_idx1"]):
                    books, name = _sheet(index, res, exp)
                    if books.openpyxl is None:
                        raise Unsupported("style refers to the expected workbook, which the task does not give")
                    sides.append(load_xlsx_styles(books.openpyxl, name, books.path, **r))
                ok = sides[0] == sides[1]
            elif kind == "freeze":
                a = _worksheet(*_sheet(r["sheet_idx0"], res, exp))
                if a is None:
                    return 0.0
                books, name = _sheet(r["sheet_idx1"], res, exp)
                b = second(_worksheet(books, name), books, r["sheet_idx1"])
                ok = a.freeze_panes == b.freeze_panes
            elif kind == "zoom":
                sheet = _worksheet(*_sheet(r["sheet_idx"], res, exp))
                if sheet is None:
                    return 0.0
                ok = match_value_to_rule(sheet.sheet_view.zoomScale or 100.0, r)
            elif kind == "data_validation":
                sheet = _worksheet(*_sheet(r["sheet_idx"], res, exp))
                if sheet is None:
                    return 0.0
                validators = sheet.data_validations.dataValidation
                ok = len(validators) >= len(r["dv_props"])
                for dv in validators:
                    one = False
                    for props in r["dv_props"]:
                        one = one or all(match_value_to_rule(getattr(dv, attr), mr) for attr, mr in props.items())
                        if one:
                            break
                    ok = ok and one
                    if not ok:
                        break
            elif kind == "check_cell":
                ok = _check_cell(r, res, exp)
            else:
                raise Unsupported(f"compare_table rule {kind!r}")
            if not ok:
                return 0.0
    except _ResultSheetMissing:
        return 0.0
    return 1.0


def compare_conference_city_in_order(result: str | None, expected: dict) -> float:
    """Cells C2:C22 of the active sheet contain, in order, the expected cities (a list: any of them)."""
    import openpyxl

    want = expected["expected"]
    try:
        sheet = openpyxl.load_workbook(result).active
    except Exception:  # OSWorld: raises on a missing or broken file
        return 0.0
    got = [cell.value for row in sheet["C2:C22"] for cell in row]
    try:
        for i in range(len(got)):
            if isinstance(want[i], str):
                if want[i] not in got[i]:
                    return 0.0
            elif isinstance(want[i], list):
                if not any(w in got[i] for w in want[i]):
                    return 0.0
            else:
                raise TypeError("expected city should be a string or a list of strings")
    except Exception:
        return 0.0
    return 1.0


METRICS = {f.__name__: f for f in (compare_table, compare_csv, compare_conference_city_in_order)}
