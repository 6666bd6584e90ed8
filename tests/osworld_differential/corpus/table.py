"""Cases for OSWorld's table.py: compare_table with every rule type, compare_csv, the conference-city metric.

Workbooks are written with openpyxl; the values probe what pandas' read_excel + round().equals does
with text numbers, "N/A", booleans, duplicate headers, formulas without cached values and precision.
"""

from __future__ import annotations

import itertools

SHEETS = {
    "ints": [["id", "qty"], [1, 2], [2, 4]],
    "floats": [["id", "qty"], [1, 2.0], [2, 4.00001]],
    "floats_close": [["id", "qty"], [1, 2.00002], [2, 4.00004]],
    "text_numbers": [["id", "qty"], ["1", "2"], ["2", "4"]],
    "leading_zeros": [["code", "v"], ["00123", 1], [123, 1]],
    "na": [["name", "v"], ["ann", "N/A"], ["bob", "NA"], ["cy", None]],
    "empty_cells": [["name", "v"], ["ann", None], ["bob", None], ["cy", None]],
    "bools": [["k", "flag"], ["a", True], ["b", False]],
    "bool_text": [["k", "flag"], ["a", "TRUE"], ["b", "FALSE"]],
    "int_flags": [["k", "flag"], ["a", 1], ["b", 0]],
    "dup_headers": [["a", "a", "b"], [1, 2, 3]],
    "dup_renamed": [["a", "a.1", "b"], [1, 2, 3]],
    "unicode": [["名前", "Straße"], ["ünï", "ß"]],
    "formulas": [["x", "y"], [1, "=A2*2"], [2, "=A3*2"]],
    "blank": [],
    "header_only": [["id", "qty"]],
    "trailing_blank_rows": [["id", "qty"], [1, 2], [2, 4], [None, None]],
    "strings_spaced": [["name"], [" ann "], ["bob"]],
}


def workbook(c, sheets: dict[str, list], name: str = "book.xlsx", setup=None) -> str:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
        if setup is not None:
            setup(ws)
    path = c.path(name)
    wb.save(path)
    return path


def add_cases(c) -> None:
    _sheet_data(c)
    _sheet_print_and_fuzzy(c)
    _cells(c)
    _structure(c)
    _charts_and_styles(c)
    _csv(c)


def _sheet_data(c) -> None:
    books = {k: workbook(c, {"Sheet1": rows}) for k, rows in SHEETS.items()}
    two = workbook(c, {"Sheet1": SHEETS["ints"], "Sheet2": SHEETS["floats"]})
    rules = [{"type": "sheet_data", "sheet_idx0": 0, "sheet_idx1": "EI0"},
             {"type": "sheet_data", "sheet_idx0": "RNSheet1", "sheet_idx1": "ENSheet1", "precision": 2}]
    keys = list(books)
    for a, b in itertools.product(keys, keys):
        for rule in rules:
            c.add("compare_table", books[a], books[b], rules=[rule])
    missing_rule = {"type": "sheet_data", "sheet_idx0": "RNSheet2", "sheet_idx1": "ENSheet2"}
    result_side = {"type": "sheet_data", "sheet_idx0": "RNSheet1", "sheet_idx1": "RNSheet2"}
    for key in keys[:6]:
        c.add("compare_table", books[key], two, rules=[missing_rule])  # the agent never made Sheet2
        c.add("compare_table", books[key], two, rules=[result_side], kind="missing_result_sheet")
        c.add("compare_table", two, books[key], rules=[{"type": "sheet_data", "sheet_idx0": "RI1", "sheet_idx1": "EI0"}])
        c.add("compare_table", two, books[key], rules=[{"type": "sheet_data", "sheet_idx0": 5, "sheet_idx1": "EI0"}])
        c.add("compare_table", two, books[key], rules=[{"type": "sheet_name"}])
        c.add("compare_table", books[key], books[key], rules=[{"type": "sheet_name"}])
        c.add("compare_table", two, books[key], rules=[
            {"type": "sheet_data", "sheet_idx0": "RI0", "sheet_idx1": "EI0"},
            {"type": "sheet_data", "sheet_idx0": "RI1", "sheet_idx1": "EI0"}])
    for kind, result in (("missing", c.missing), ("none", None), ("corrupt", c.text("book.xlsx", "not a zip")),
                         ("corrupt", c.text("book.csv", "a,b\n1,2\n"))):
        c.add("compare_table", result, books["ints"], kind=kind, rules=rules[:1])
    for rules_ in c.task_options("compare_table"):
        if all(r.get("type") == "sheet_data" for r in rules_.get("rules", [])):
            c.add("compare_table", books["ints"], books["floats"], **rules_)
            c.add("compare_table", books["ints"], books["ints"], **rules_)


def _sheet_print_and_fuzzy(c) -> None:
    def exported(rows_by_sheet: dict[str, str]) -> str:
        book = workbook(c, {name: [["x"]] for name in rows_by_sheet})
        stem = book[:-len(".xlsx")]
        for sheet, text in rows_by_sheet.items():
            with open(f"{stem}-{sheet}.csv", "w", encoding="utf-8") as f:
                f.write(text)
        return book

    printed = ["a,b\n1,2\n", "a,b\n1,2\n\n\n", "A,B\n1,2\n", " a,b \n1,2\n", "a,b\n1,3\n", "", "ünï,ß\n"]
    books = [exported({"Sheet1": t}) for t in printed]
    no_export = workbook(c, {"Sheet1": [["a"]]})
    for a, b in itertools.product(books, books[:4] + [no_export]):
        for opts in ({}, {"ignore_case": True}):
            c.add("compare_table", a, b, rules=[{"type": "sheet_print", "sheet_idx0": "RI0", "sheet_idx1": "EI0", **opts}])
    for opts in ({}, {"ignore_case": True}):
        c.add("compare_table", no_export, books[0], rules=[{"type": "sheet_print", "sheet_idx0": "RI0",
                                                           "sheet_idx1": "EI0", **opts}])
    latin = workbook(c, {"Sheet1": [["x"]]})
    with open(latin[:-5] + "-Sheet1.csv", "wb") as f:
        f.write("caf\xe9,1\n".encode("latin-1"))
    c.add("compare_table", latin, latin, rules=[{"type": "sheet_print", "sheet_idx0": "RI0", "sheet_idx1": "EI0"}])

    fuzzy_rows = {"Sheet1": [["Address", "Phone"], ["12 Main Rd.", "+1 (555) 123"], ["Ünï Straße 5", None],
                             [3.5, "N/A"]]}
    variants = [fuzzy_rows,
                {"Sheet1": [["address", "phone"], ["12 Main Road", "555 123"], ["Ünï Straße 5", "x"], [3.5, "N/A"]]},
                {"Sheet1": [["Address"], ["12 Main Rd"]]}]
    fuzzy_books = [workbook(c, v) for v in variants]
    rule_sets = [
        [{"range": ["A1:B4"], "type": "exact_match"}],
        [{"range": ["A2:A2"], "type": "fuzzy_match", "threshold": 80, "normalization": [["Rd", "Road"]],
          "ignore_case": True}],
        [{"range": ["B2:B2"], "type": "includes", "ignore_chars": " ()+-", "trim_leadings": "+ "}],
        [{"range": ["A1:A3"], "type": "included_by", "ignore_case": True, "trim_trailings": "."}],
        [{"range": ["A4:B4"], "type": "exact_match"}, {"range": ["A2:A3"], "type": "fuzzy_match"}],
    ]
    for a, b in itertools.product(fuzzy_books, fuzzy_books):
        for rules in rule_sets:
            c.add("compare_table", a, b, rules=[{"type": "sheet_fuzzy", "sheet_idx0": "RI0", "sheet_idx1": "EI0",
                                                 "rules": rules}])
    c.add("compare_table", fuzzy_books[0], fuzzy_books[1], rules=[
        {"type": "sheet_fuzzy", "sheet_idx0": "RNNope", "sheet_idx1": "EI0", "rules": rule_sets[0]}])


def _cells(c) -> None:
    from openpyxl.styles import Font, PatternFill

    def styled(ws) -> None:
        ws["A1"].font = Font(name="Arial", bold=True, italic=True, size=14, color="FFFF0000", underline="single")
        ws["B2"].fill = PatternFill("solid", fgColor="FFFFFF00")
        ws["B2"].number_format = "0.00%"
        ws["A2"].hyperlink = "https://example.com"
        ws.merge_cells("C1:D1")

    sheets = {"Sheet1": [["Total", 0.25, "merged"], ["link", 0.5], [True, "=1+1"], ["ünï", "2024-01-01"]]}
    book = workbook(c, sheets, setup=styled)
    plain = workbook(c, {"Sheet1": [["Total", 0.25], ["link", "0.5"]]})
    props = [
        {"value": {"method": "eq", "ref": "Total"}}, {"value": {"method": "eq", "ref": 0.25}},
        {"value": {"method": "approx:0.01", "ref": 0.5}}, {"value": {"method": "re", "ref": "^T"}},
        {"value": {"method": "eq", "ref": True}}, {"value": {"method": "eq", "ref": "=1+1"}},
        {"font_bold": {"method": "eq", "ref": True}}, {"font_italic": {"method": "eq", "ref": True}},
        {"font_name": {"method": "eq", "ref": "Arial"}}, {"font_size": {"method": "eq", "ref": 14}},
        {"font_color": {"method": "eq", "ref": "FFFF0000"}}, {"font_underline": {"method": "eq", "ref": "single"}},
        {"fill_type": {"method": "eq", "ref": "patternFill"}}, {"bgcolor": {"method": "eq", "ref": "FFFFFF00"}},
        {"number_format": {"method": "eq", "ref": "0.00%"}}, {"hyperlink": {"method": "eq", "ref": ""}},
        {"merge": {"method": "eq", "ref": True}}, {"font_family": {"method": "eq", "ref": None}},
        {"no_such_style": {"method": "eq", "ref": None}}, {"value": {"method": "magic", "ref": 1}},
        {"value": {"method": "str_list_eq", "ref": ["Total"]}},
    ]
    for coordinate in ("A1", "B1", "B2", "A2", "A3", "B3", "D1", "C1", "A4", "Z99"):
        for prop in props:
            for path, index in ((book, 0), (book, "RNSheet1"), (plain, "RI0")):
                c.add("compare_table", path, None, rules=[{"type": "check_cell", "sheet_idx": index,
                                                           "coordinate": coordinate, "props": prop}])
    for prop in props:
        c.add("compare_table", book, None, rules=[{"type": "check_cell", "sheet_idx": "RNNope", "coordinate": "A1",
                                                   "props": prop}])
    for options in c.task_options("compare_table"):
        if options.get("rules") and all(r.get("type") == "check_cell" for r in options["rules"]):
            c.add("compare_table", book, None, **options)


def _structure(c) -> None:
    from openpyxl.worksheet.datavalidation import DataValidation
    from openpyxl.worksheet.filters import FilterColumn, Filters

    def frozen(cell):
        return lambda ws: setattr(ws, "freeze_panes", cell)

    def zoomed(scale):
        return lambda ws: setattr(ws.sheet_view, "zoomScale", scale)

    def validated(ws) -> None:
        dv = DataValidation(type="list", formula1='"Yes,No"', allow_blank=True)
        dv.add("B2:B10")
        ws.add_data_validation(dv)

    def rows_hidden(ws) -> None:
        ws.row_dimensions[2].hidden = True
        ws.row_dimensions[3].height = 30
        ws.column_dimensions["B"].width = 25
        ws.column_dimensions["C"].hidden = True

    def filtered(ws) -> None:
        ws.auto_filter.ref = "A1:B3"
        ws.auto_filter.filterColumn.append(FilterColumn(colId=0, filters=Filters(filter=["1"])))
        ws.auto_filter.add_sort_condition("B2:B3", descending=True)

    rows = {"Sheet1": [["id", "qty"], [1, 2], [2, 4]]}
    setups = {"plain": None, "freeze_b2": frozen("B2"), "freeze_a2": frozen("A2"), "zoom150": zoomed(150),
              "zoom50": zoomed(50), "validated": validated, "rows": rows_hidden, "filtered": filtered}
    books = {k: workbook(c, rows, setup=s) for k, s in setups.items()}
    two_sided = [{"type": "freeze", "sheet_idx0": "RI0", "sheet_idx1": "EI0"},
                 {"type": "row_props", "sheet_idx0": "RI0", "sheet_idx1": "EI0", "props": ["hidden", "height"]},
                 {"type": "col_props", "sheet_idx0": "RI0", "sheet_idx1": "EI0", "props": ["width", "hidden"]},
                 {"type": "filter", "sheet_idx0": "RI0", "sheet_idx1": "EI0"},
                 {"type": "pivot_table", "sheet_idx0": "RI0", "sheet_idx1": "EI0", "pivot_props": ["name", "location"]},
                 {"type": "sparkline", "sheet_idx0": "RI0", "sheet_idx1": "EI0"},
                 {"type": "freeze", "sheet_idx0": "RNNope", "sheet_idx1": "EI0"}]
    for a, b in itertools.product(books, books):
        for rule in two_sided:
            c.add("compare_table", books[a], books[b], rules=[rule])
    one_sided = [{"type": "zoom", "sheet_idx": 0, "method": "ge", "ref": 120},
                 {"type": "zoom", "sheet_idx": "RI0", "method": "eq", "ref": 100},
                 {"type": "zoom", "sheet_idx": "RNNope", "method": "eq", "ref": 100},
                 {"type": "data_validation", "sheet_idx": 0, "dv_props": [
                     {"type": {"method": "eq", "ref": "list"}, "formula1": {"method": "eq", "ref": '"Yes,No"'}}]},
                 {"type": "data_validation", "sheet_idx": 0, "dv_props": [
                     {"sqref": {"method": "spreadsheet_range", "ref": ["B2:B5", "B1:B20"]}}]},
                 {"type": "data_validation", "sheet_idx": 0, "dv_props": []},
                 {"type": "no_such_rule", "sheet_idx": 0}]
    for key in books:
        for rule in one_sided:
            c.add("compare_table", books[key], None, rules=[rule])
        c.add("compare_table", books[key], books["plain"], rules=[two_sided[0], one_sided[0]])


def _charts_and_styles(c) -> None:
    from openpyxl.chart import BarChart, LineChart, PieChart, Reference
    from openpyxl.formatting.rule import CellIsRule, FormulaRule
    from openpyxl.styles import Font, PatternFill

    def chart(kind, title=None, direction=None, legend="r", data_cols=(2, 2)):
        def setup(ws) -> None:
            ch = kind()
            if title is not None:
                ch.title = title
            if direction is not None:
                ch.type = direction
            ch.add_data(Reference(ws, min_col=data_cols[0], min_row=1, max_col=data_cols[1], max_row=3), titles_from_data=True)
            ch.set_categories(Reference(ws, min_col=1, min_row=2, max_row=3))
            if legend is None:
                ch.legend = None
            else:
                ch.legend.position = legend
            if hasattr(ch, "x_axis"):
                ch.x_axis.title = "X axis"
            ws.add_chart(ch, "E2")
        return setup

    rows = {"Sheet1": [["name", "qty", "more"], ["a", 2, 3], ["b", 4, 5]]}
    setups = {"none": None, "bar": chart(BarChart, "Sales"), "bar2": chart(BarChart, "Sales"),
              "bar_col": chart(BarChart, "Sales", direction="col"), "line": chart(LineChart, "Sales"),
              "pie": chart(PieChart, None, legend=None), "bar_more": chart(BarChart, "Sales", data_cols=(2, 3))}
    books = {k: workbook(c, rows, setup=s) for k, s in setups.items()}
    props = [["type"], ["title", "legend"], ["direction", "xtitle", "ytitle"], ["width", "height", "anchor"], []]
    for a, b in itertools.product(books, books):
        for p in props:
            c.add("compare_table", books[a], books[b], rules=[{"type": "chart", "sheet_idx0": "RI0", "sheet_idx1": "EI0",
                                                               "chart_props": p}])

    def bold_a(ws) -> None:
        ws["A1"].font = Font(bold=True)

    def fill_b(ws) -> None:
        ws["B2"].fill = PatternFill("solid", fgColor="FFFF0000")

    def cond_cellis(ws) -> None:
        ws.conditional_formatting.add("B2:B3", CellIsRule(operator="greaterThan", formula=["3"],
                                                          fill=PatternFill("solid", bgColor="FFFFC7CE")))

    def cond_formula(ws) -> None:
        ws.conditional_formatting.add("B2:B3", FormulaRule(formula=["B2>3"], font=Font(bold=True)))

    def cond_between(ws) -> None:
        ws.conditional_formatting.add("B2:C3", CellIsRule(operator="between", formula=["2", "4"],
                                                          font=Font(italic=True)))

    style_setups = {"plain": None, "bold": bold_a, "fill": fill_b, "cellis": cond_cellis, "formula": cond_formula,
                    "between": cond_between}
    style_books = {k: workbook(c, rows, setup=s) for k, s in style_setups.items()}
    style_props = [["font_bold"], ["bgcolor", "fill_type"], ["font_italic", "number_format"], ["font_name", "font_size"]]
    for a, b in itertools.product(style_books, style_books):
        for p in style_props:
            c.add("compare_table", style_books[a], style_books[b], rules=[{"type": "style", "sheet_idx0": "RI0",
                                                                           "sheet_idx1": "EI0", "props": p}])


def _csv(c) -> None:
    texts = ["x,y\n1,2\n", " x,y \n1,2\n", "X,Y\n1,2\n", "x,y\r\n1,2\r\n", "", "ünï,ß\n", "x,y\n1,2"]
    results = [("value", c.text("r.csv", t)) for t in texts] + [
        ("value", c.bytes("r.csv", "caf\xe9\n".encode("latin-1"))), ("missing", c.missing), ("none", None)]
    golds = [c.text("g.csv", t) for t in texts[:4]]
    c.cross("compare_csv", results, golds + [[golds[1], golds[0]], [c.missing, golds[2]], []],
            options=[{}, {"strict": False}, {"ignore_case": True}, {"strict": False, "ignore_case": True}])
    cities = [[None, None, c_] for c_ in ["Paris, France", "Lyon", "Nice"]] + [[None, None, f"City {i}"] for i in range(18)]
    city_books = [("value", workbook(c, {"Sheet": [["a", "b", "city"], *cities]})),
                  ("value", workbook(c, {"Sheet": [["a", "b", "city"], [None, None, "Paris"]]})),
                  ("missing", c.missing), ("none", None), ("corrupt", c.text("c.xlsx", "no"))]
    for kind, book in city_books:
        full = ["Paris", ["Lyon", "Lille"], "Nice"] + [f"City {i}" for i in range(18)]
        for expected in ({"expected": full}, {"expected": full[:-1] + ["Rome"]}, {"expected": ["Berlin"]},
                         {"expected": ["Paris", 3]}, {"expected": []}):
            c.add("compare_conference_city_in_order", book, expected, kind=kind)
