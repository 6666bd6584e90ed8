"""The generated corpus of metric inputs the differential test scores twice (ours, OSWorld's).

Each family module adds cases through a `Corpus`: realistic values (the shapes OSWorld's task files
use, and, when a local OSWorld checkout is available, the rules of its real task files) crossed with
edge cases. Every case has a `kind`: "value" for an ordinary input, or the edge it probes ("none": a
None result, "missing": a path that does not exist, "corrupt": a file its library cannot parse,
"wrong_type": a value of another type than the getter gives, ...). The differential test accepts a
score of 0 from us where OSWorld raises only for (metric, kind) pairs it lists.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


@dataclass
class Case:
    id: str
    metric: str
    args: list
    kwargs: dict = field(default_factory=dict)
    kind: str = "value"

    def as_json(self) -> dict:
        return {"id": self.id, "metric": self.metric, "args": self.args, "kwargs": self.kwargs}


@dataclass
class GetterCase:
    id: str
    getter: str
    config: dict
    kind: str = "value"

    def as_json(self) -> dict:
        return {"id": self.id, "getter": self.getter, "config": self.config}


class Corpus:
    """Files in `root` and the cases that use them."""

    def __init__(self, root: Path, osworld_tasks: list[dict] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cases: list[Case | GetterCase] = []
        self.osworld_tasks = osworld_tasks or []
        self._n = 0
        self.missing = str(self.root / "does-not-exist" / "missing.file")

    # ---- files ---------------------------------------------------------------------------------
    def path(self, name: str) -> str:
        self._n += 1
        folder = self.root / f"f{self._n:05d}"
        folder.mkdir()
        return str(folder / name)

    def text(self, name: str, text: str, newline: str | None = None) -> str:
        p = self.path(name)
        with open(p, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
        return p

    def bytes(self, name: str, data: bytes) -> str:
        p = self.path(name)
        Path(p).write_bytes(data)
        return p

    def json(self, name: str, data: Any) -> str:
        return self.text(name, json.dumps(data, ensure_ascii=False))

    # ---- cases ---------------------------------------------------------------------------------
    def add(self, metric: str, *args: Any, kind: str = "value", **kwargs: Any) -> None:
        self.cases.append(Case(f"{metric}#{len(self.cases)}", metric, list(args), dict(kwargs), kind))

    def cross(self, metric: str, results: Iterable[tuple[str, Any]], seconds: Iterable[Any], *,
              options: Iterable[dict] = ({},)) -> None:
        """Every (kind, result) with every second argument and every options dict."""
        for (kind, result), second, opts in itertools.product(list(results), list(seconds), list(options)):
            self.add(metric, result, second, kind=kind, **opts)

    def add_getter(self, getter: str, config: dict, kind: str = "value") -> None:
        self.cases.append(GetterCase(f"{getter}#{len(self.cases)}", getter, config, kind))

    def task_rules(self, func: str, side: str = "expected") -> list[Any]:
        """`rules` of the rule getters OSWorld's task files give `func` (on `side`), when a local
        OSWorld checkout was found; [] otherwise."""
        out = []
        for task in self.osworld_tasks:
            ev = task.get("evaluator", {})
            funcs = ev.get("func")
            funcs = funcs if isinstance(funcs, list) else [funcs]
            getters = ev.get(side)
            getters = getters if isinstance(getters, list) else [getters] * len(funcs)
            for f, g in zip(funcs, getters):
                if f == func and isinstance(g, dict) and g.get("type") == "rule" and "rules" in g:
                    out.append(g["rules"])
        return out

    def task_options(self, func: str) -> list[dict]:
        out = []
        for task in self.osworld_tasks:
            ev = task.get("evaluator", {})
            funcs = ev.get("func")
            funcs = funcs if isinstance(funcs, list) else [funcs]
            options = ev.get("options")
            options = options if isinstance(options, list) else [options] * len(funcs)
            out += [o for f, o in zip(funcs, options) if f == func and isinstance(o, dict)]
        return out


FAMILIES = ("general", "apps", "browser", "table", "docs", "slides", "media")


def build(root: Path, osworld_tasks: list[dict] | None = None, families: tuple[str, ...] = FAMILIES) -> Corpus:
    import importlib

    corpus = Corpus(root, osworld_tasks)
    for name in families:
        importlib.import_module(f"osworld_differential.corpus.{name}").add_cases(corpus)
    return corpus


def local_osworld_tasks() -> list[dict]:
    """OSWorld's task files from a local checkout ($QVL_OSWORLD_DIR or ~/.cache/qvl-agent/osworld, with
    evaluation_examples/examples/), read at run time and never copied into the repository; [] if none."""
    base = Path(os.environ.get("QVL_OSWORLD_DIR", Path.home() / ".cache" / "qvl-agent" / "osworld"))
    examples = base / "evaluation_examples" / "examples"
    tasks = []
    for path in sorted(examples.glob("*/*.json")) if examples.is_dir() else []:
        try:
            task = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(task, dict) and isinstance(task.get("evaluator"), dict):
            tasks.append(task)
    return tasks
