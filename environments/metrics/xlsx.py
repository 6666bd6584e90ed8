"""What `compare_table` reads from an .xlsx beyond cell values (OSWorld `metrics/utils.py`): raw cell
values from the sheet XML, cell styles (conditional formats evaluated), charts, pivot tables,
sparklines, row/column dimensions, auto-filters.

Each loader returns plain data that two workbooks' sheets can be compared by (`==`).
"""

from __future__ import annotations

import itertools
import re
import zipfile
from typing import Any

_NS = {
    "oo": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "x14": "http://schemas.microsoft.com/office/spreadsheetml/2009/9/main",
    "xm": "http://schemas.microsoft.com/office/excel/2006/main",
}
# xmltodict keys: the main namespace dropped, the others as prefixes.
_XMLTODICT_NS = {_NS["oo"]: None, _NS["x14"]: "x14", _NS["xm"]: "xm"}


def _selector(css: str):
    from lxml.cssselect import CSSSelector

    return CSSSelector(css, namespaces=_NS)


def _sheet_files(z: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name → `sheetId`. OSWorld opens `xl/worksheets/sheet<sheetId>.xml` (not the relationship target)."""
    import lxml.etree

    with z.open("xl/workbook.xml") as f:
        workbook = lxml.etree.fromstring(f.read())
    return {sh.get("name"): sh.get("sheetId") for sh in _selector("oo|sheets>oo|sheet")(workbook)}


def load_sparklines(xlsx_path: str, sheet_name: str) -> dict[str, str]:
    """`{"F3": "Sheet1!C3:E3"}`: each sparkline's cell and data range; {} for a file that is no zip."""
    import lxml.etree
    import xmltodict

    try:
        with zipfile.ZipFile(xlsx_path, "r") as z:
            sheet_id = _sheet_files(z)[sheet_name]
            with z.open(f"xl/worksheets/sheet{sheet_id}.xml") as f:
                sparklines = _selector("x14|sparkline")(lxml.etree.fromstring(f.read()))
    except zipfile.BadZipFile:
        return {}
    out = {}
    for sp in sparklines:
        d = xmltodict.parse(lxml.etree.tostring(sp, encoding="unicode"), process_namespaces=True,
                            namespaces=_XMLTODICT_NS)["x14:sparkline"]
        out[d["xm:sqref"]] = d["xm:f"]
    return out


def read_cell_value(xlsx_path: str, sheet_name: str, coordinate: str) -> Any:
    """The value stored in the sheet XML (not openpyxl's): numbers as float, shared/inline strings,
    formula strings and error codes as text; None for an empty or missing cell, a missing sheet or
    a broken file, and for booleans and dates (OSWorld reads no other cell types)."""
    import os

    import lxml.etree
    import xmltodict

    if not os.path.exists(xlsx_path):
        return None
    try:
        with zipfile.ZipFile(xlsx_path, "r") as z:
            try:
                with z.open("xl/sharedStrings.xml") as f:
                    sst = lxml.etree.fromstring(f.read())
                text_of = _selector("oo|t")
                shared = ["".join(t.text for t in text_of(si)) for si in _selector("oo|sst>oo|si")(sst)]
            except Exception:  # no shared strings, or a run without text: OSWorld drops them all
                shared = []
            sheet_id = _sheet_files(z)[sheet_name]
            with z.open(f"xl/worksheets/sheet{sheet_id}.xml") as f:
                sheet = lxml.etree.fromstring(f.read())
            cells = _selector(f'oo|row>oo|c[r="{coordinate}"]')(sheet)
            if len(cells) == 0:
                return None
            cell = cells[0]
    except Exception:
        return None
    c = xmltodict.parse(lxml.etree.tostring(cell, encoding="unicode"), process_namespaces=True,
                        namespaces=_XMLTODICT_NS)["c"]
    try:
        kind = c.get("@t") if isinstance(c, dict) else None
        if kind is None or kind == "n":
            return float(c["v"])
        if kind == "s":
            return shared[int(c["v"])]
        if kind in ("str", "e"):
            return c["v"]
        if kind == "inlineStr":
            return c["is"]["t"]
    except (KeyError, ValueError):
        return None
    return None


# ---- styles -----------------------------------------------------------------------------------
def read_cell_style(name: str, cell, diff_style=None) -> Any:
    """One style property of a cell; with `diff_style` (a conditional format that applies), the
    property the format sets. Properties: number_format, font_name/family/color/bold/italic/underline/size,
    fill_type, bgcolor (= fgcolor), hyperlink, merge."""
    from openpyxl.cell.cell import MergedCell

    has_value = cell.value is not None
    if name == "number_format":
        if not (has_value and cell.data_type == "n"):
            return None
        return cell.number_format if diff_style is None else diff_style.numFmt.formatCode
    font_props = {"font_name": "name", "font_family": "family", "font_bold": "bold", "font_italic": "italic",
                  "font_underline": "underline", "font_size": "size"}
    if name in font_props:
        return getattr((diff_style or cell).font, font_props[name]) if has_value else None
    if name == "font_color":
        return (diff_style or cell).font.color.rgb if has_value else None
    if name == "fill_type":
        try:
            return (diff_style or cell).fill.tagname
        except Exception:
            return None
    if name in ("bgcolor", "fgcolor"):
        try:
            return diff_style.fill.bgColor.rgb if diff_style is not None else cell.fill.fgColor.rgb
        except Exception:
            return None
    if name == "hyperlink":
        return (cell.hyperlink or "") if has_value else None
    if name == "merge":
        return isinstance(cell, MergedCell)
    from environments.metrics.rules import Unsupported

    raise Unsupported(f"cell style {name!r}")


def _cf_operator(op: str, value: Any, refs: list) -> bool:
    """A `cellIs` conditional format's comparison; mismatched types or too few refs are False."""
    try:
        if op == "lessThanOrEqual":
            return value <= refs[0]
        if op == "lessThan":
            return value < refs[0]
        if op == "equal":
            return value == refs[0]
        if op == "greaterThanOrEqual":
            return value >= refs[0]
        if op == "notEqual":
            return value != refs[0]
        if op == "greaterThan":
            return value > refs[0]
        if op == "between":
            return min(refs) <= value <= max(refs)
        if op == "notBetween":
            return value < min(refs) or value > max(refs)
    except (TypeError, IndexError):
        return False
    # OSWorld logs other operators and then fails on an unset result: no cell counts as matching.
    raise UnboundLocalError(op)


_ABSOLUTE_RANGE = re.compile(r"\$(?P<col1>[A-Z]{1,3})\$(?P<row1>\d+)(?::\$(?P<col2>[A-Z]{1,3})\$(?P<row2>\d+))?")
_CF_TEXT_RULES = {"expression", "containsText", "notContainsText", "endsWith", "beginsWith", "containsErrors",
                  "notContainsErrors"}


def load_xlsx_styles(workbook, sheet_name: str, book_path: str, **options: Any) -> dict[str, list]:
    """`{coordinate: [property values]}` for every cell of the sheet, `options["props"]` in order; a cell
    that a conditional format applies to gets the format's properties instead (formats evaluated with
    the `formulas` package, cell values read from the XML as `read_cell_value` does)."""
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.cell_range import CellRange

    try:
        sheet = workbook[sheet_name]
    except KeyError:
        return {}
    props: list[str] = options.get("props", [])
    styles: dict[str, list] = {}
    for column in sheet.iter_cols():
        for cell in column:
            styles[cell.coordinate] = [read_cell_style(p, cell) for p in props]

    def value_at(coordinate: str) -> Any:
        return read_cell_value(book_path, sheet_name, coordinate)

    # OSWorld's per-rule condition is a closure that outlives its rule: a rule of a type it does not
    # evaluate (top10, aboveAverage, ...) tests cells with the previous rule's condition, reading that
    # condition's variables as they are now. `kind`, `condition`, `arguments`, `op`, `refs` replay that.
    kind = condition = arguments = op = refs = None

    def applies(v: Any) -> bool:
        if kind == "text":
            return condition(v, *arguments)
        if kind == "cellIs":
            return _cf_operator(op, v, refs)
        raise NameError("no condition yet")

    for fmt in sheet.conditional_formatting:
        for rule in fmt.rules:
            formulae, argument_lists, broken = [], [], False
            for text in rule.formula:
                try:
                    import formulas

                    compiled = formulas.Parser().ast("=" + text)[1].compile()
                except Exception:
                    broken = True
                    break
                arguments = []
                for m in _ABSOLUTE_RANGE.findall(text):
                    # findall gives "" (never None) for a missing second corner, so OSWorld always takes
                    # the range branch, and a single `$A$1` makes an invalid range that raises: kept.
                    arguments.append([value_at(f"{get_column_letter(c[1])}{c[0]}")
                                      for c in CellRange(f"{m[0]}{m[1]}:{m[2]}{m[3]}").cells])
                formulae.append(compiled)
                argument_lists.append(arguments)
            if broken:
                continue
            if rule.type in _CF_TEXT_RULES:
                condition, arguments, kind = formulae[0], argument_lists[0], "text"
            elif rule.type == "cellIs":
                op = rule.operator
                try:
                    refs = [f() for f in formulae]
                except Exception:
                    continue
                kind = "cellIs"
            active = []
            empty = 0  # never reset: after 50 empty cells each range stops at its first empty cell
            for cell_range in fmt.cells:
                for row, col in cell_range.cells:
                    cell = sheet.cell(row=row, column=col)
                    value = value_at(f"{get_column_letter(col)}{row}")
                    if value is None:
                        empty += 1
                        if empty > 50:
                            break
                        continue
                    try:
                        hit = applies(value)
                    except Exception:
                        hit = False
                    if hit:
                        active.append(cell)
            for cell in active:
                styles[cell.coordinate] = [read_cell_style(p, cell, rule.dxf) for p in props]
    return styles


# ---- charts, pivots, dimensions, filters ------------------------------------------------------
def _title_text(title) -> Any:
    try:
        return title.tx.rich.p[0].r[0].t
    except Exception:
        return None


def _ref(data) -> str:
    for kind in ("numRef", "strRef"):
        ref = getattr(data, kind, None)
        if ref is not None and hasattr(ref, "f"):
            return ref.f
    return ""


def load_charts(workbook, sheet_name: str, **options: Any) -> dict[str, dict]:
    """`{"<values>,<categories>;…": {prop: value}}` per chart; props from `options["chart_props"]`:
    title, legend, anchor, width, height, type, direction, xtitle, ytitle, ztitle."""
    try:
        sheet = workbook[sheet_name]
    except KeyError:
        return {}
    props = set(options.get("chart_props", []))
    charts = {}
    for ch in sheet._charts:
        key = ";".join(f"{_ref(s.val)},{_ref(s.cat)}" for s in ch.series)
        info: dict[str, Any] = {}
        if "title" in props:
            info["title"] = _title_text(ch.title)
        if "legend" in props:
            info["legend"] = ch.legend.position if ch.legend is not None else None
        if "anchor" in props:  # OSWorld lists to.row twice (not from.row): kept
            info["anchor"] = [ch.anchor.editAs, ch.anchor._from.col, ch.anchor.to.row, ch.anchor.to.col,
                              ch.anchor.to.row]
        if "width" in props:
            info["width"] = ch.width
        if "height" in props:
            info["height"] = ch.height
        if "type" in props:
            info["type"] = ch.tagname
        if "direction" in props:
            info["direction"] = ch.barDir
        for axis in ("x", "y", "z"):
            if f"{axis}title" in props:
                try:
                    info[f"{axis}title"] = getattr(ch, f"{axis}_axis").title.tx.rich.p[0].r[0].t
                except Exception:
                    info[f"{axis}title"] = None
        charts[key] = info
    return charts


def load_pivot_tables(workbook, sheet_name: str, **options: Any) -> dict[str, dict]:
    """`{"<source type>;<first cell>:<last cell>;<sheet>": {prop: value}}` per pivot table; the source
    range is narrowed to the fields that select items. Props from `options["pivot_props"]`: name,
    show_total, show_empty_row, show_empty_col, show_headers, location, selection/filter (+ordered),
    col_fields, row_fields, data_fields (+data_fields_name)."""
    from openpyxl.utils import coordinate_to_tuple

    try:
        sheet = workbook[sheet_name]
    except KeyError:
        return {}
    props = set(options.get("pivot_props", []))
    pivots = {}
    for pvt in sheet._pivots:
        raw = [[(item.h, item.x) for item in field.items if item.x is not None] for field in pvt.pivotFields]
        lead_trimmed = list(itertools.dropwhile(lambda r: len(r) == 0, raw))
        left_bias = len(raw) - len(lead_trimmed)
        selection = list(itertools.dropwhile(lambda r: len(r) == 0, reversed(lead_trimmed)))[::-1]
        right_bias = len(lead_trimmed) - len(selection)
        source = pvt.cache.cacheSource
        first, last = source.worksheetSource.ref.split(":")
        r1, c1 = coordinate_to_tuple(first)
        r2, c2 = coordinate_to_tuple(last)
        key = f"{source.type};{(r1, c1 + left_bias)}:{(r2, c2 - right_bias)};{source.worksheetSource.sheet}"
        info: dict[str, Any] = {}
        if "name" in props:
            info["name"] = pvt.name
        if "show_total" in props:
            info["show_total"] = pvt.visualTotals
        if "show_empty_row" in props:
            info["show_empty_row"] = pvt.showEmptyRow
        if "show_empty_col" in props:
            info["show_empty_col"] = pvt.showEmptyCol
        if "show_headers" in props:
            info["show_headers"] = pvt.showHeaders
        if "location" in props:
            info["location"] = pvt.location
        if "filter" in props or "selection" in props:
            info["selection"] = selection if "ordered" in props else [set(r) for r in selection]
        if "filter" in props:
            info["filter_fields"] = {f.fld for f in pvt.pageFields}
        if "col_fields" in props:
            info["col_fields"] = [f.x - left_bias for f in pvt.colFields]
        if "row_fields" in props:
            info["row_fields"] = [f.x - left_bias for f in pvt.rowFields]
        if "data_fields" in props:
            named = "data_fields_name" in props
            info["data_fields"] = [f"{f.fld - left_bias:d};{f.name if named else ''};{f.subtotal};{f.showDataAs}"
                                   for f in pvt.dataFields]
        pivots[key] = info
    return pivots


def load_rows_or_cols(workbook, sheet_name: str, **options: Any) -> dict[Any, dict]:
    """`{row number | column letter: {prop: value}}` over the sheet's row/column dimensions
    (`options["obj"]` "row" or "column", props: hidden, collapsed, height / width, auto_size, min, max)."""
    try:
        sheet = workbook[sheet_name]
    except KeyError:
        return {}
    dims = getattr(sheet, f"{options['obj']}_dimensions")
    props = set(options.get("props", []))
    return {key: {p: getattr(dim, p) for p in props} for key, dim in dims.items()}


def load_filters(workbook, sheet_name: str, **options: Any) -> dict[str, Any]:
    """The sheet's auto-filter: range, per-column filters (sorted by column), sort state."""
    try:
        sheet = workbook[sheet_name]
    except KeyError:
        return {}
    flt = sheet.auto_filter
    columns = []
    for col in flt.filterColumn:
        entry: dict[str, Any] = {"col_id": col.colId, "hidden_button": col.hiddenButton,
                                 "show_button": col.showButton}
        if col.filters is not None:
            entry["filters_blank"] = col.filters.blank
            entry["filters"] = set(col.filters.filter)
        if col.customFilters is not None:
            entry["custom_filters_op"] = col.customFilters._and
            entry["custom_filters"] = {(c.operator, c.val) for c in col.customFilters.customFilter}
        columns.append(entry)
    out: dict[str, Any] = {"ref": flt.ref, "filter_column": sorted(columns, key=lambda d: d["col_id"])}
    state = flt.sortState
    if state is not None:
        out["sort_state"] = {
            "sort": state.columnSort, "case": state.caseSensitive, "method": state.sortMethod, "ref": state.ref,
            "condition": [{"descending": c.descending, "key": c.sortBy, "ref": c.ref, "custom_list": c.customList,
                           "dxf_id": c.dxfId, "icon": c.iconSet, "iconid": c.iconId} for c in state.sortCondition],
        }
    return out
