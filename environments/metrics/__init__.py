"""OSWorld's metrics, reimplemented score for score (one module per OSWorld metric family).

`METRICS` maps a metric name to `fn(result, expected, **options)` (or `fn(result, **options)` when
the task gives no `expected`). Arguments keep OSWorld's positional order even where a task puts
the rule first. Scores are floats in [0, 1].

The reference is OSWorld's own code (PyPI `desktop-env` 1.0.2); tests/environments/differential runs
it beside these on generated cases. Where OSWorld's metric raises on the agent's output (no file,
a file that does not parse), these score 0 instead; those cases are listed in the differential test.
A case these do not implement raises `Unsupported`, which the evaluator reports as skipped, never
as a score.
"""

from __future__ import annotations

from typing import Callable

from environments.metrics import (basic_os, chrome, docs, general, gimp, libreoffice, others, pdf, slides, table,
                                  thunderbird, vlc, vscode)
from environments.metrics.rules import Unsupported, compare_urls, match_record, match_value_to_rule

METRICS: dict[str, Callable[..., float]] = {}
for _module in (general, basic_os, chrome, docs, slides, table, vscode, vlc, thunderbird, libreoffice, pdf,
                others, gimp):  # gimp last: its check_file_exists wins, as in OSWorld's __init__
    METRICS.update(_module.METRICS)

# OSWorld metrics that are not here, and why (reported as the reason a task is skipped).
NOT_IMPLEMENTED: dict[str, str] = {
    "compare_audios": "needs librosa (MFCC + DTW), which this project does not depend on",
    "compare_videos": "needs OpenCV to decode video, which this project does not depend on",
    "compare_image_text": "needs an OCR model (easyocr), which cannot be downloaded here",
}

__all__ = ["METRICS", "NOT_IMPLEMENTED", "Unsupported", "compare_urls", "match_record", "match_value_to_rule"]
