"""Our OSWorld metrics against OSWorld's own code, case for case (tests/osworld_differential).

OSWorld's evaluator package (PyPI desktop-env) runs in a venv of its own under ~/.cache/qvl-agent,
built here on first use (PyPI access needed once). Every case of the generated corpus is scored by
both; the test fails on any disagreement, except where OSWorld raises on the agent's output and we
score 0, which must be one of the listed, commented (metric, kind) pairs.
"""

from __future__ import annotations

from collections import Counter

import pytest

from environments.getters import GETTERS
from environments.metrics import METRICS
from osworld_differential import compare
from osworld_differential.corpus import build, local_osworld_tasks

MIN_CASES = 5000


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first run builds the venv
def test_our_metrics_score_as_osworld_does(tmp_path):
    corpus = build(tmp_path / "corpus", local_osworld_tasks())
    verdicts = compare.run(corpus, tmp_path)
    report = compare.report(verdicts)
    print(report)  # per-metric counts (pytest -s, or the failure message)

    assert len(verdicts) >= MIN_CASES, report
    covered = {v.case.metric for v in verdicts if hasattr(v.case, "metric")}
    assert set(METRICS) <= covered, f"metrics without cases: {sorted(set(METRICS) - covered)}"
    assert "rule_relativeTime" in GETTERS and any(getattr(v.case, "getter", "") == "rule_relativeTime" for v in verdicts)
    status = Counter(v.status for v in verdicts)
    assert status["disagree"] == 0, report
    used = {(v.case.metric, v.case.kind) for v in verdicts if v.status == "explained"}
    assert not set(compare.OSWORLD_RAISES) - used, \
        f"listed OSWorld crashes no case produces: {sorted(set(compare.OSWORLD_RAISES) - used)}"
    # the corpus must reach both outcomes of the metrics, not only their error paths
    scored = Counter(v.case.metric for v in verdicts if "score" in v.theirs and v.theirs["score"] > 0)
    never_positive = sorted(m for m in METRICS if scored[m] == 0)
    assert not never_positive, f"metrics no case scores above 0: {never_positive}"
