"""Editor and file metrics (OSWorld `metrics/vscode.py`): text/JSON files, answers, zip archives, test suites."""

from __future__ import annotations

import difflib
import importlib.util
import io
import json
import os
import re
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

from environments.metrics.general import read_text
from environments.metrics.rules import Unsupported


def _load_json(path: str, skip_first_line: bool = False) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            if skip_first_line:  # VS Code writes a `//` comment line above keybindings.json
                f.readline()
            return json.load(f)
    except Exception:
        return None


def check_json_keybindings(actual: str | None, expected: dict, **options: Any) -> float:
    """The expected binding is an element of the JSON list (read whole, else without its first line)."""
    for skip in (False, True):
        data = _load_json(actual, skip) if actual is not None else None
        if data is not None and type(data) is list:
            break
    else:
        return 0.0
    return float(expected["expected"] in data)


def check_json_settings(actual: str | None, expected: dict, **options: Any) -> float:
    if not actual:
        return 0.0
    try:
        with open(actual, encoding="utf-8") as f:
            data = json.load(f)
    except Exception:
        return 0.0
    for key, value in expected["expected"].items():
        if key not in data or data[key] != value:
            return 0.0
    return 1.0


def compare_text_file(actual: str | None, expected: str, **options: Any) -> float:
    """Texts equal (optionally with runs of blanks collapsed, case folded); a missing or non-UTF-8
    result scores 0 (OSWorld: raises)."""
    if not actual:
        return 0.0
    try:
        got = read_text(actual)
    except (OSError, UnicodeDecodeError):
        return 0.0
    want = read_text(expected)
    if options.get("ignore_blanks", False):
        got = re.sub(r"\s+", " ", re.sub(r"[\t\n]", " ", got).strip())
        want = re.sub(r"\s+", " ", re.sub(r"[\t\n]", " ", want).strip())
    if options.get("ignore_case", False):
        got, want = got.lower(), want.lower()
    return float(got == want)


def _pdf_text(content: bytes) -> str:
    # OSWorld reads the PDFs with PyPDF2, which lives on as pypdf (same text extraction lineage).
    from pypdf import PdfReader

    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def compare_zip_files(actual: str | None, expected: str, **options: Any) -> float:
    """Same member names; members equal byte for byte, PDFs by text similarity ≥ 0.95. A result
    that is no zip scores 0 (OSWorld: raises)."""
    if not actual:
        return 0.0
    try:
        got_zip = zipfile.ZipFile(actual, "r")
    except (OSError, zipfile.BadZipFile):
        return 0.0
    with got_zip, zipfile.ZipFile(expected, "r") as want_zip:
        names = set(got_zip.namelist())
        if names != set(want_zip.namelist()):
            return 0.0
        for name in names:
            a, b = got_zip.read(name), want_zip.read(name)
            if name.lower().endswith(".pdf"):
                if difflib.SequenceMatcher(None, _pdf_text(a), _pdf_text(b)).ratio() < 0.95:
                    return 0.0
            elif a != b:
                return 0.0
    return 1.0


def compare_config(actual: str | None, rules: dict, **options: Any) -> float:
    """The file's text equals `rules["expected"]`; a missing result scores 0 (OSWorld: raises)."""
    if not actual:
        return 0.0
    try:
        return float(read_text(actual) == rules["expected"])
    except (OSError, UnicodeDecodeError):
        return 0.0


def compare_answer(actual: Any, rules: dict, **options: Any) -> float:
    if not actual:
        return 0.0
    return float(actual == rules["expected"])


def is_extension_installed(actual: str | None, rules: dict, **options: Any) -> float:
    """`rules["expected"]` is (`contain`) or is not (`not_contain`) in the command output; no output
    scores 0 (OSWorld: raises)."""
    if rules["type"] not in ("contain", "not_contain"):
        raise Unsupported(f"is_extension_installed type {rules['type']!r}")
    if actual is None:
        return 0.0
    return float((rules["expected"] in actual) == (rules["type"] == "contain"))


def check_python_file_by_test_suite(actual_files: Any, test_file: str | None, **options: Any) -> float:
    """Import `test_file` (its folder as cwd and first on sys.path) and call its test function:
    a bool scores 1/0, a number is clamped to [0, 1], anything else scores its truth. Any failure
    scores 0. This runs the task's own test code, as OSWorld does."""
    name = options.get("test_function_name", "test")
    if not test_file:
        return 0.0
    path = Path(test_file).resolve()
    if not path.is_file():
        return 0.0
    module_name = f"qvl_task_test_{uuid.uuid4().hex[:8]}"
    cwd, sys_path = os.getcwd(), sys.path.copy()
    try:
        os.chdir(path.parent)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            test = getattr(module, name)
            if not callable(test):
                return 0.0
            result = test()
        except BaseException as e:  # noqa: BLE001 - the task's code may even call sys.exit
            if isinstance(e, KeyboardInterrupt):
                raise
            return 0.0
        if isinstance(result, bool):
            return float(result)
        if isinstance(result, (int, float)):
            return max(0.0, min(1.0, float(result)))
        return float(bool(result))
    finally:
        sys.modules.pop(module_name, None)
        os.chdir(cwd)
        sys.path[:] = sys_path


def compare_result_files(src: str | None, tgt: str | None) -> float:
    """Two answer files: the gold number appears in (or is within 1e-4 of) the result, else equal text.
    A missing result scores 0 (OSWorld: raises)."""
    if not src or not tgt:
        return 0.0
    try:
        got = read_text(src).strip()
    except (OSError, UnicodeDecodeError):
        return 0.0
    want = read_text(tgt).strip()
    try:
        want_number = float(want)
        if want in got:
            return 1.0
        return float(abs(float(got) - want_number) < 1e-4)
    except Exception:
        return float(got == want)


METRICS = {f.__name__: f for f in (
    check_json_keybindings, check_json_settings, compare_text_file, compare_zip_files, compare_config,
    compare_answer, is_extension_installed, check_python_file_by_test_suite, compare_result_files)}
