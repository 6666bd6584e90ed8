"""OSWorld task files as typed models, and loaders for a file, a folder and a meta file.

Real OSWorld task JSON loads unmodified: unknown fields are kept (`extra="allow"`), the odd
spellings stay as written (`"shell": "true"` is interpreted where a step runs, not here), and an
empty getter object (`"result": {}`, used by unannotated tasks) reads as "no getter".
The one structural rule OSWorld asserts is checked here: a list `func` needs parallel lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class SetupStep(BaseModel):
    """One `config`/`postconfig` entry: `{"type": T, "parameters": {...}}`."""

    model_config = ConfigDict(extra="allow")

    type: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class GetterSpec(BaseModel):
    """A `result`/`expected` entry: `{"type": T, ...getter options}`."""

    model_config = ConfigDict(extra="allow")

    type: str

    @property
    def options(self) -> dict[str, Any]:
        """Every field but `type`, as the getter receives it."""
        return dict(self.model_extra or {})


def _empty_to_none(v: Any) -> Any:
    if isinstance(v, dict) and not v:
        return None
    if isinstance(v, list):
        return [None if isinstance(x, dict) and not x else x for x in v]
    return v


class EvaluatorSpec(BaseModel):
    """The `evaluator` object (OSWorld `DesktopEnv._set_evaluator_info`)."""

    model_config = ConfigDict(extra="allow")

    func: str | list[str]
    result: GetterSpec | list[GetterSpec | None] | None = None
    expected: GetterSpec | list[GetterSpec | None] | None = None
    options: dict[str, Any] | list[dict[str, Any] | None] | None = None
    conj: Literal["and", "or"] = "and"
    postconfig: list[SetupStep] = Field(default_factory=list)

    @field_validator("result", "expected", "options", mode="before")
    @classmethod
    def _empty_getter_is_none(cls, v: Any) -> Any:
        return _empty_to_none(v)

    @model_validator(mode="after")
    def _parallel_lists(self) -> "EvaluatorSpec":
        if isinstance(self.func, list):
            n = len(self.func)
            for name in ("result", "expected", "options"):
                value = getattr(self, name)
                if value is not None and (not isinstance(value, list) or len(value) != n):
                    raise ValueError(
                        f"evaluator.func is a list of {n} metrics, so evaluator.{name} must be a list of {n} entries"
                    )
        return self

    def metrics(self) -> list[tuple[str, GetterSpec | None, GetterSpec | None, dict[str, Any]]]:
        """(func, result getter, expected getter, options) per metric, lists or not."""
        if isinstance(self.func, str):
            res = self.result if not isinstance(self.result, list) else None
            exp = self.expected if not isinstance(self.expected, list) else None
            opts = self.options if isinstance(self.options, dict) else {}
            return [(self.func, res, exp, opts or {})]
        n = len(self.func)
        res = self.result if isinstance(self.result, list) else [None] * n
        exp = self.expected if isinstance(self.expected, list) else [None] * n
        opts = self.options if isinstance(self.options, list) else [None] * n
        return [(self.func[i], res[i], exp[i], opts[i] or {}) for i in range(n)]


class Task(BaseModel):
    """An OSWorld task file (`evaluation_examples/examples/<domain>/<id>.json`)."""

    model_config = ConfigDict(extra="allow")

    id: str
    instruction: str
    snapshot: str = ""
    source: str | list[str] = ""  # one task of test_all.json gives a list of URLs
    config: list[SetupStep] = Field(default_factory=list)
    trajectory: str = "trajectories/"
    related_apps: list[str] = Field(default_factory=list)
    evaluator: EvaluatorSpec
    proxy: bool = False
    fixed_ip: bool = False
    possibility_of_env_change: str | None = None
    # Ours (OSWorld's runner takes one budget for all tasks): this task's step budget, used when eval gets no
    # --max-steps.
    max_steps: int | None = Field(default=None, ge=1)
    # Where the task came from (not part of the JSON): the domain folder it was loaded under.
    domain: str | None = Field(default=None, exclude=True)
    path: Path | None = Field(default=None, exclude=True)


def _read_json(path: Path, what: str):
    """The parsed JSON of a `what` file; a missing file or bad JSON is a clear error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def load_task(path: str | Path, domain: str | None = None) -> Task:
    """Load one task file; errors name the file."""
    path = Path(path)
    data = _read_json(path, "task file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a task file holds one JSON object, got {type(data).__name__}")
    try:
        task = Task.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ValueError(f"{path}: invalid task at {where}: {first['msg']}") from None
    task.domain = domain if domain is not None else (path.parent.name or None)
    task.path = path
    return task


# A task file to load: its path, its domain (None: the file's folder) and the id a meta file expects (or None).
TaskRef = tuple[Path, "str | None", "str | None"]


def load_ref(ref: TaskRef) -> Task:
    """The task a reference names; a meta file's id must match the file's."""
    path, domain, task_id = ref
    task = load_task(path, domain=domain)
    if task_id is not None and task.id != task_id:
        raise ValueError(f"{task.path}: id {task.id!r} does not match the meta file's {task_id!r}")
    return task


def task_dir_refs(folder: str | Path) -> list[TaskRef]:
    """Every `*.json` task file under `folder` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"task folder not found: {folder}")
    files = sorted(folder.rglob("*.json"))
    if not files:
        raise ValueError(f"no *.json task files under {folder}")
    return [(f, None, None) for f in files]


def load_task_dir(folder: str | Path) -> list[Task]:
    return [load_ref(r) for r in task_dir_refs(folder)]


def meta_refs(meta_path: str | Path, examples_dir: str | Path | None = None,
              domains: list[str] | None = None) -> list[TaskRef]:
    """The task files an OSWorld meta file (`{domain: [task ids]}`, e.g. test_all.json) lists.

    `examples_dir` defaults to `<meta dir>/examples`, OSWorld's layout; task files are
    `<examples_dir>/<domain>/<id>.json`. `domains` keeps only those domains.
    """
    meta_path = Path(meta_path)
    meta = _read_json(meta_path, "meta file")
    if not isinstance(meta, dict) or not all(isinstance(v, list) for v in meta.values()):
        raise ValueError(f"{meta_path}: a meta file maps each domain to a list of task ids")
    examples = Path(examples_dir) if examples_dir is not None else meta_path.parent / "examples"
    if domains is not None:
        unknown = sorted(set(domains) - set(meta))
        if unknown:
            raise ValueError(f"{meta_path}: no domain(s) {', '.join(unknown)}; it has {', '.join(sorted(meta))}")
    return [(examples / domain / f"{task_id}.json", domain, task_id) for domain, ids in meta.items()
            if domains is None or domain in domains for task_id in ids]


def load_meta(meta_path: str | Path, examples_dir: str | Path | None = None,
              domains: list[str] | None = None) -> list[Task]:
    """Tasks listed by an OSWorld meta file (see meta_refs)."""
    return [load_ref(r) for r in meta_refs(meta_path, examples_dir, domains)]


def truthy(value: Any) -> bool:
    """OSWorld passes `"shell": "true"` (a string) in some tasks; treat common spellings as booleans."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y", "on")
    return bool(value)
