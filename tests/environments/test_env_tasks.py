"""OSWorld task files: real ones load unmodified; loaders and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from environments.tasks import Task, load_meta, load_task, load_task_dir, truthy

OSWORLD = Path(__file__).parent / "osworld"
REAL_FILES = sorted(OSWORLD.rglob("*.json"))


def test_there_are_real_os_and_chrome_files():
    domains = {p.parent.name for p in REAL_FILES}
    assert {"os", "chrome"} <= domains and len(REAL_FILES) >= 5


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: f"{p.parent.name}/{p.stem[:8]}")
def test_real_task_files_load_and_round_trip(path):
    raw = json.loads(path.read_text())
    task = load_task(path)
    assert task.id == raw["id"] == path.stem
    assert task.domain == path.parent.name
    assert task.instruction == raw["instruction"]
    assert [s.type for s in task.config] == [s["type"] for s in raw.get("config", [])]
    # Nothing in the file is dropped: dumping gives back every key with the same value
    # (empty getters `{}` read as "no getter").
    dumped = task.model_dump(mode="json", exclude_unset=True)
    for key, value in raw.items():
        if key != "evaluator":
            assert dumped[key] == value, key
    assert dumped["evaluator"]["func"] == raw["evaluator"]["func"]


def test_real_step_parameters_are_kept_verbatim():
    task = load_task(OSWORLD / "os/7688b85f-87a4-4e4a-b2f8-f3d6c3f29b82.json")
    assert task.config[0].parameters == {
        "command": "echo 'password' | sudo -S touch ~/Desktop/todo.txt && sudo mkdir ~/Desktop/done",
        "shell": True,
    }
    result = task.evaluator.result
    assert result.type == "vm_command_line" and result.options["shell"] is True


def _task(**evaluator) -> dict:
    return {"id": "t1", "instruction": "do it", "config": [], "evaluator": evaluator}


def test_unknown_fields_string_shell_and_postconfig_are_kept(tmp_path):
    data = _task(func=["exact_match", "check_include_exclude"], conj="or",
                 result=[{"type": "vm_command_line", "command": "echo hi", "shell": "true"}, None],
                 expected=[{"type": "rule", "rules": {"expected": "hi\n"}}, {"type": "rule", "rules": {}}],
                 options=[{}, None], postconfig=[{"type": "sleep", "parameters": {"seconds": 0.1}}],
                 _config_note="a comment")
    data.update(hint="The input is case sensitive.", env_may_change=True, proxy=False, fixed_ip=False)
    data["config"] = [{"type": "execute", "parameters": {"command": "ls", "shell": "true"}}]
    p = tmp_path / "t1.json"
    p.write_text(json.dumps(data))
    task = load_task(p)
    assert task.model_extra == {"hint": "The input is case sensitive.", "env_may_change": True}
    assert task.evaluator.model_extra == {"_config_note": "a comment"}
    assert task.config[0].parameters["shell"] == "true" and truthy("true") and not truthy("false")
    assert task.evaluator.conj == "or" and task.evaluator.postconfig[0].type == "sleep"
    metrics = task.evaluator.metrics()
    assert [m[0] for m in metrics] == ["exact_match", "check_include_exclude"]
    assert metrics[0][1].options == {"command": "echo hi", "shell": "true"} and metrics[1][1] is None
    assert metrics[1][3] == {}


def test_list_func_needs_parallel_lists(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(_task(func=["exact_match", "exact_match"], result=[{"type": "rule", "rules": 1}])))
    with pytest.raises(ValueError, match=r"bad\.json.*must be a list of 2 entries"):
        load_task(p)


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="task file not found"):
        load_task(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        load_task(tmp_path / "broken.json")
    (tmp_path / "noid.json").write_text(json.dumps({"instruction": "x", "evaluator": {"func": "infeasible"}}))
    with pytest.raises(ValueError, match=r"noid\.json: invalid task at id"):
        load_task(tmp_path / "noid.json")


def test_load_task_dir_reads_every_file():
    tasks = load_task_dir(OSWORLD)
    assert sorted(t.id for t in tasks) == sorted(p.stem for p in REAL_FILES)


def test_load_meta_with_osworld_layout(tmp_path):
    examples = tmp_path / "examples"
    for p in REAL_FILES:
        (examples / p.parent.name).mkdir(parents=True, exist_ok=True)
        (examples / p.parent.name / p.name).write_bytes(p.read_bytes())
    meta = {"os": ["7688b85f-87a4-4e4a-b2f8-f3d6c3f29b82", "a462a795-fdc7-4b23-b689-e8b6df786b78"],
            "chrome": ["bb5e4c0d-f964-439c-97b6-bdb9747de3f4"]}
    (tmp_path / "test_small.json").write_text(json.dumps(meta))
    tasks = load_meta(tmp_path / "test_small.json")
    assert [(t.domain, t.id) for t in tasks] == [(d, i) for d, ids in meta.items() for i in ids]
    only = load_meta(tmp_path / "test_small.json", examples, domains=["chrome"])
    assert [t.id for t in only] == meta["chrome"]
    with pytest.raises(ValueError, match="no domain"):
        load_meta(tmp_path / "test_small.json", domains=["gimp"])
    meta["os"].append("00000000-0000-0000-0000-000000000000")
    (tmp_path / "test_bad.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="00000000"):
        load_meta(tmp_path / "test_bad.json")


def test_task_model_accepts_a_dict():
    task = Task.model_validate(_task(func="infeasible"))
    assert task.evaluator.func == "infeasible" and task.evaluator.metrics()[0][1] is None
