"""PDF metrics (OSWorld `metrics/pdf.py`)."""

from __future__ import annotations

import operator


def check_pdf_pages(pdf_file: str | None, rules: dict) -> float:
    """`operator.<relation>(number of pages, ref_value)`; a file pypdf cannot read scores 0 (OSWorld: raises)."""
    from pypdf import PdfReader

    if pdf_file is None:
        return 0.0
    try:
        pages = len(PdfReader(pdf_file).pages)
    except Exception:
        return 0.0
    return float(getattr(operator, rules["relation"])(pages, rules["ref_value"]))


METRICS = {"check_pdf_pages": check_pdf_pages}
