"""EPUB and MP3 metrics (OSWorld `metrics/others.py`)."""

from __future__ import annotations

import os
import zipfile
from typing import Any

from environments.metrics.general import diff_text_file
from environments.metrics.rules import match_value_to_rule


def _epub_parts(path: str) -> list[str]:
    """toc.ncx without navPoint lines, content.opf without dc:identifier lines, and every .html
    re-serialised by lxml (line breaks dropped first), written beside the file in `<file>.dir/`."""
    import lxml.html

    out_dir = path + ".dir"
    os.makedirs(out_dir, exist_ok=True)
    files = []
    try:
        with zipfile.ZipFile(path, "r") as z:
            names = z.namelist()
            for member, drop in (("toc.ncx", "navPoint"), ("content.opf", "dc:identifier")):
                if member in names:
                    target = os.path.join(out_dir, member)
                    lines = z.read(member).decode().splitlines()
                    with open(target, "w", encoding="utf-8") as f:
                        f.writelines(line + "\n" for line in lines if drop not in line)
                    files.append(target)
            for member in names:
                if member.endswith(".html"):
                    target = os.path.join(out_dir, member)
                    text = "".join(c for c in z.read(member).decode() if c not in "\n\r")
                    html = lxml.html.fromstring(text.encode())
                    with open(target, "w", encoding="utf-8") as f:
                        f.write(lxml.html.tostring(html, pretty_print=True, encoding="unicode"))
                    files.append(target)
    except zipfile.BadZipFile:
        return []
    return sorted(files)


def compare_epub(result: str | None, expected: str) -> float:
    """Mean diff_text_file ratio over the two books' parts, paired in sorted order."""
    if result is None:
        return 0.0
    try:
        got = _epub_parts(result)
    except OSError:  # OSWorld: raises
        return 0.0
    want = _epub_parts(expected)
    score = sum(diff_text_file(a, b) for a, b in zip(got, want))
    return score / len(got) if got else score


def check_mp3_meta(result: str | None, meta: dict[str, Any]) -> float:
    """Each ID3 tag (values joined by ",", "" when absent) matches its rule. A file without ID3 tags
    scores 0 (OSWorld: raises)."""
    from mutagen.easyid3 import EasyID3
    from mutagen.id3 import ID3NoHeaderError

    if result is None:
        return 0.0
    try:
        tags = EasyID3(result)
    except (ID3NoHeaderError, OSError):
        return 0.0
    ok = True
    for key, rule in meta.items():
        value = tags.get(key, "")
        if isinstance(value, list):
            value = ",".join(value)
        ok = ok and match_value_to_rule(value, rule)
    return float(ok)


METRICS = {"compare_epub": compare_epub, "check_mp3_meta": check_mp3_meta}
