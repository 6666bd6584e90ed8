"""Browser metrics (OSWorld `metrics/chrome.py`): tabs, URLs, bookmarks, profile settings, and the
PDF/HTML/archive comparisons that live in the same OSWorld module."""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
from typing import Any
from urllib.parse import urlparse, urlunparse

from environments.metrics.rules import Unsupported, compare_urls, lists_match


def _url(info: Any) -> Any:
    return info.get("url", None) if isinstance(info, dict) else info


def is_expected_active_tab(active_tab_info: Any, rule: dict) -> float:
    if not active_tab_info:
        return 0.0
    if rule["type"] != "url":
        return 0.0
    return float(compare_urls(rule["url"], _url(active_tab_info)))


def is_expected_active_tab_approximate(active_tab_info: Any, rule: dict) -> float:
    """URLs equal once the query is dropped (exact strings otherwise: fragment and host case count)."""
    if not active_tab_info:
        return 0.0
    if rule["type"] != "url":
        return 0.0

    def without_query(url: str) -> str:
        return urlunparse(urlparse(url)._replace(query=""))

    return float(without_query(rule["url"]) == without_query(_url(active_tab_info)))


def is_expected_url_pattern_match(result: Any, rules: dict) -> float:
    """Every regex of `rules["expected"]` is found in the URL (a string, or a dict's `url`)."""
    if not result:
        return 0.0
    if isinstance(result, str):
        url = result
    elif isinstance(result, dict) and "url" in result:
        url = result["url"]
    else:
        return 0.0
    return float(all(re.search(p, url) for p in rules["expected"]))


def is_expected_installed_extensions(installed: Any, expected: dict) -> float:
    if not installed:
        return 0.0
    return float(set(expected["expected"]).issubset(set(installed)))


def is_expected_tabs(open_tabs: list[dict] | None, rule: dict) -> float:
    """As many tabs as expected URLs, each expected URL matching some tab (compare_urls)."""
    if not open_tabs:
        return 0.0
    if rule["type"] != "url":
        return 0.0
    return float(lists_match(rule["urls"], [tab["url"] for tab in open_tabs], compare_urls))


def is_expected_bookmarks(bookmarks: Any, rule: dict) -> float:
    if not bookmarks:
        return 0.0
    bar = bookmarks["bookmark_bar"]["children"]
    kind = rule["type"]
    if kind == "bookmark_bar_folders_names":
        return float({b["name"] for b in bar if b["type"] == "folder"} == set(rule["names"]))
    if kind == "bookmark_bar_websites_urls":
        return float({b["url"] for b in bar if b["type"] == "url"} == set(rule["urls"]))
    if kind == "liked_authors_websites_urls":
        folder = next((b for b in bar if b["type"] == "folder" and b["name"] == "Liked Authors"), None)
        if not folder:
            return 0.0
        urls = {b["url"] for b in folder["children"] if b["type"] == "url"}
        choices = [[u] if isinstance(u, str) else u for u in rule["urls"]]
        return float(any(set(combo) == urls for combo in itertools.product(*choices)))
    raise Unsupported(f"is_expected_bookmarks type {kind!r}")


def is_expected_search_query(active_tab_info: Any, rules: dict) -> float:
    """The active tab's URL matches `rules["expect"]["pattern"]`; a bare URL string scores 0
    (OSWorld: raises)."""
    if not active_tab_info:
        return 0.0
    if not isinstance(active_tab_info, dict):
        return 0.0
    return float(re.search(rules["expect"]["pattern"], active_tab_info["url"]) is not None)


def _pdf_text(path: str) -> str:
    import pymupdf

    with pymupdf.open(path) as pdf:
        return "".join(page.get_text() for page in pdf).strip()


def compare_pdfs(pdf1: str | list | None, pdf2: str | list | None) -> float:
    """Mean over pairs of the fuzz ratio of the PDFs' text (PyMuPDF); a pair that cannot be read adds 0."""
    from rapidfuzz import fuzz

    if type(pdf2) is not list:
        pdf1, pdf2 = [pdf1], [pdf2]
    score = 0.0
    for a, b in zip(pdf1, pdf2):
        try:
            score += fuzz.ratio(_pdf_text(a), _pdf_text(b)) / 100
        except Exception:
            pass
    return score / len(pdf2)


def _pdf_images(path: str) -> list:
    import pymupdf
    from PIL import Image

    images = []
    doc = pymupdf.open(path)
    for page in doc:
        for img in page.get_images(full=True):
            data = doc.extract_image(img[0])["image"]
            try:
                images.append(Image.open(io.BytesIO(data)))
            except Exception:
                pass
    return images


def compare_pdf_images(pdf1: str | None, pdf2: str | None, **options: Any) -> float:
    """Share of the embedded images (in order) whose perceptual hashes differ by at most 5 bits;
    no images in either → 1, different counts → 0.

    OSWorld copies both files into one folder under their base names first, so two files with the
    same base name are the second file compared with itself; that is reproduced.
    """
    import imagehash

    if not pdf1 or not pdf2 or not (os.path.exists(pdf1) and os.path.exists(pdf2)):
        return 0.0
    first = pdf2 if os.path.basename(pdf1) == os.path.basename(pdf2) else pdf1
    try:
        images1, images2 = _pdf_images(first), _pdf_images(pdf2)
    except Exception:
        return 0.0
    if len(images1) != len(images2):
        return 0.0
    if not images1:
        return 1.0
    close = sum(imagehash.phash(a) - imagehash.phash(b) <= 5 for a, b in zip(images1, images2))
    return close / len(images1)


def compare_archive(pred: str | None, gold: str, **options: Any) -> float:
    """Unpack both (next to each file: `<name>_pred`, `<name>_gold`, the gold one reused); same
    sorted file names under `file_path`, then the mean of the per-file metric for `file_type`.
    A result that is no archive scores 0 (OSWorld: raises)."""
    from environments.metrics import METRICS

    options = dict(options)
    file_path = options.pop("file_path", "")
    if not pred:
        return 0.0
    pred_dir = os.path.splitext(pred)[0] + "_pred"
    gold_dir = os.path.splitext(gold)[0] + "_gold"
    if os.path.exists(pred_dir):
        shutil.rmtree(pred_dir, ignore_errors=True)
    os.makedirs(pred_dir)
    try:
        shutil.unpack_archive(pred, pred_dir)
    except (OSError, shutil.ReadError, ValueError):
        return 0.0
    if not os.path.exists(gold_dir):
        os.makedirs(gold_dir)
        shutil.unpack_archive(gold, gold_dir)
    try:
        pred_files = sorted(os.listdir(os.path.join(pred_dir, file_path)))
    except OSError:
        return 0.0
    gold_files = sorted(os.listdir(os.path.join(gold_dir, file_path)))
    if pred_files != gold_files:
        return 0.0
    per_type = {"text": "compare_text_file", "pdf": "compare_pdfs", "docx": "compare_docx_files",
                "ppt": "compare_pptx_files", "image": "compare_images", "csv": "compare_csv",
                "table": "compare_table", "audio": "compare_audios", "video": "compare_videos"}
    file_type = options.pop("file_type", "text")
    if file_type not in per_type:
        raise Unsupported(f"compare_archive file_type {file_type!r}")
    compare = METRICS[per_type[file_type]]
    score = sum(compare(os.path.join(pred_dir, file_path, a), os.path.join(gold_dir, file_path, b), **options)
                for a, b in zip(pred_files, gold_files))
    return score / len(pred_files)


def compare_htmls(html1: str | None, html2: str, **options: Any) -> float:
    """Walk both parsed documents (BeautifulSoup, lxml parser) in parallel: tag names, stripped texts
    and attributes equal (`sdnum` attributes ignored with `ignore_sdnum`). A missing result scores 0
    (OSWorld: raises)."""
    from bs4 import BeautifulSoup, Tag

    try:
        with open(html1, encoding="utf-8") as f:
            soup1 = BeautifulSoup(f, "lxml")
    except (OSError, TypeError, UnicodeDecodeError):
        return 0.0
    with open(html2, encoding="utf-8") as f:
        soup2 = BeautifulSoup(f, "lxml")
    ignore_sdnum = options.get("ignore_sdnum", None)

    def same(a: Any, b: Any) -> bool:
        if not (isinstance(a, Tag) and isinstance(b, Tag)):
            return a == b
        if a.name != b.name or a.text.strip() != b.text.strip():
            return False
        if a.attrs != b.attrs:
            if ignore_sdnum:
                return ({k: v for k, v in a.attrs.items() if k != "sdnum"}
                        == {k: v for k, v in b.attrs.items() if k != "sdnum"})
            return False
        return True

    return float(all(same(a, b) for a, b in zip(soup1.descendants, soup2.descendants)))


def is_cookie_deleted(cookie_data: list | None, rule: dict) -> float:
    """No cookie's host (column 1) matches a domain (compare_urls); no cookie database scores 0
    (OSWorld: raises)."""
    if rule["type"] != "domains":
        raise Unsupported(f"is_cookie_deleted type {rule['type']!r}")
    if cookie_data is None:
        return 0.0
    hosts = [c[1] for c in cookie_data]
    return float(not any(compare_urls(d, h) for d in rule["domains"] for h in hosts))


def is_shortcut_on_desktop(shortcuts: dict | None, rule: dict) -> float:
    """Some .desktop file has the line `Name=<name>` (`Exec=<exec>`), exactly and newline-terminated."""
    kind = rule["type"]
    if kind not in ("name", "exec"):
        raise Unsupported(f"is_shortcut_on_desktop type {kind!r}")
    if shortcuts is None:
        return 0.0
    line = ("Name=" + rule["name"] if kind == "name" else "Exec=" + rule["exec"]) + "\n"
    return float(any(line in content for content in shortcuts.values()))


def check_history_deleted(history: list | None, rule: dict) -> float:
    """No history URL (column 0) contains a keyword; no history database scores 0 (OSWorld: raises)."""
    if rule["type"] != "keywords":
        raise Unsupported(f"check_history_deleted type {rule['type']!r}")
    if history is None:
        return 0.0
    urls = [h[0] for h in history]
    return float(not any(k in u for k in rule["keywords"] for u in urls))


def check_enabled_experiments(enabled: list | None, rule: dict) -> float:
    if rule["type"] != "names":
        raise Unsupported(f"check_enabled_experiments type {rule['type']!r}")
    if enabled is None:
        return 0.0
    return float([e.split("@")[0] for e in enabled] == rule["names"])


def check_font_size(font_size: dict | None, rule: dict) -> float:
    if rule["type"] not in ("value", "range"):
        raise Unsupported(f"check_font_size type {rule['type']!r}")
    if not isinstance(font_size, dict):
        return 0.0
    size = font_size["default_font_size"]
    if rule["type"] == "value":
        return float(size == rule["value"])
    return float(rule["min"] < size < rule["max"])


def is_added_to_steam_cart(active_tab_info: dict | None, rule: dict) -> float:
    if not isinstance(active_tab_info, dict):
        return 0.0
    content = active_tab_info["content"]
    return float(all(item in content for item in rule["items"]))


METRICS = {f.__name__: f for f in (
    is_expected_active_tab, is_expected_active_tab_approximate, is_expected_url_pattern_match,
    is_expected_installed_extensions, is_expected_tabs, is_expected_bookmarks, is_expected_search_query,
    compare_pdfs, compare_pdf_images, compare_archive, compare_htmls, is_cookie_deleted, is_shortcut_on_desktop,
    check_history_deleted, check_enabled_experiments, check_font_size, is_added_to_steam_cart)}
