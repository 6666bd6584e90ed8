"""Runs inside the OSWorld venv (see venv.py): scores a JSON list of cases with OSWorld's own
metric functions and writes one outcome per case.

    python osworld_runner.py CASES.json OUT.json

A case is {"id", "metric", "args", "kwargs"} (or {"id", "getter": "rule_relativeTime", "config"} for
the date-rule getter). An outcome is {"id", "score": float} or {"id", "none": true} (the metric
returned None) or {"id", "error": "Type: message"}. Only the standard library and the venv's
packages are imported here; this file never imports the project.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import types
from contextlib import redirect_stdout


def _import_osworld():
    stubs = os.path.join(os.path.dirname(sys.executable), "..", "qvl-stubs")
    sys.path.insert(0, os.path.abspath(stubs))
    logging.disable(logging.CRITICAL)
    import tldextract

    # OSWorld's compare_urls calls tldextract.extract, which fetches the public-suffix list online first;
    # the bundled snapshot gives the same split for every host the cases use.
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    tldextract.extract = offline
    from desktop_env.evaluators import metrics

    # Importing getters/__init__ would pull Playwright and Google Drive clients; misc.py alone needs neither.
    import desktop_env.evaluators as evaluators

    pkg = types.ModuleType("desktop_env.evaluators.getters")
    pkg.__path__ = [os.path.join(os.path.dirname(evaluators.__file__), "getters")]
    sys.modules["desktop_env.evaluators.getters"] = pkg
    from desktop_env.evaluators.getters import misc

    return metrics, misc


def main(cases_path: str, out_path: str) -> None:
    metrics, misc = _import_osworld()
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    outcomes = []
    for case in cases:
        cwd = os.getcwd()
        os.chdir(case.get("cwd", cwd))  # some metrics write scratch files (temp.pdf) into the cwd
        try:
            with redirect_stdout(io.StringIO()):  # OSWorld's metrics print freely
                if "getter" in case:
                    value = getattr(misc, "get_" + case["getter"])(None, case["config"])
                    outcomes.append({"id": case["id"], "value": value})
                    continue
                value = getattr(metrics, case["metric"])(*case["args"], **case.get("kwargs", {}))
            if value is None:
                outcomes.append({"id": case["id"], "none": True})
            else:
                outcomes.append({"id": case["id"], "score": float(value)})
        except BaseException as e:  # noqa: BLE001 - OSWorld's crash is the outcome being recorded
            if isinstance(e, KeyboardInterrupt):
                raise
            outcomes.append({"id": case["id"], "error": f"{type(e).__name__}: {e}"[:300]})
        finally:
            os.chdir(cwd)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(outcomes, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
