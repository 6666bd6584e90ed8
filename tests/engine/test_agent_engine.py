"""The agent on the engine: an embedded-policy run of 6 steps on a bundled task calls the vision encoder once per
distinct screenshot (the rest comes from the prefix and encoder caches), and `qvl-agent eval --agent embedded
--parallel 2` loads one model in the parent that both workers use."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from agent.policies import EmbeddedPolicy, PolicyReply
from environments.suite import EvalSettings, Workbench, load_oracle, load_tasks, run_suite, run_task
from environments.sites import fill_site_placeholders


class OracleActingOnEngine:
    """Every step asks the embedded policy (the real prompt: instruction, history, screenshots) and then acts as
    the task's oracle, so that a random tiny model still walks the task for 6 steps."""

    kind = "embedded"

    def __init__(self, embedded: EmbeddedPolicy, replies: list[str]):
        self.embedded, self.replies = embedded, replies
        self.screenshots: set[bytes] = set()
        self.model_replies: list[PolicyReply] = []

    def respond(self, messages):
        for m in messages:
            for part in m["content"] if isinstance(m["content"], list) else []:
                if part.get("type") == "image":
                    self.screenshots.add(hashlib.sha256(part["image"].convert("RGB").tobytes()).digest())
        self.model_replies.append(self.embedded.respond(messages))
        return PolicyReply(self.replies[len(self.model_replies) - 1])


@pytest.mark.slow
@pytest.mark.browser
def test_six_agent_steps_encode_each_screenshot_once(dense_path, chromium_path, tmp_path):
    task = next(t for t in load_tasks() if t.id == "forms-contact-sales-newsletter")
    embedded = EmbeddedPolicy(str(dense_path), dtype=torch.float32, device="cpu", max_new_tokens=4,
                              kv_cache_memory="128MiB", max_model_len=32768)
    bench = Workbench(EvalSettings(agent="embedded", max_steps=6))
    try:
        policy = OracleActingOnEngine(embedded, fill_site_placeholders(load_oracle(task), bench.sites))
        bench._policy = policy
        outcome = run_task(bench, task, tmp_path / "run")
        stats = embedded.engine.stats()
    finally:
        bench.close()
        embedded.close()
    assert outcome.steps == 6 and len(policy.model_replies) == 6
    assert len(policy.screenshots) >= 5
    assert stats.encoder_calls == len(policy.screenshots)
    prompt_tokens = sum(r.tokens_in for r in policy.model_replies)
    print(f"\n6 agent steps: {prompt_tokens} prompt tokens, {stats.prefix_cache_hits} from the prefix cache "
          f"({stats.prefix_cache_hits / prompt_tokens:.0%}), {stats.encoder_calls} encoder calls for "
          f"{len(policy.screenshots)} distinct screenshots")
    assert stats.prefix_cache_hits > prompt_tokens // 2
    assert all(r.finish_reason == "length" and r.tokens_out <= 4 for r in policy.model_replies)


@pytest.mark.slow
def test_parallel_embedded_eval_shares_one_engine(dense_path, tmp_path):
    tasks = [t for t in load_tasks() if t.domain == "settings"][:2]
    lines: list[str] = []
    settings = EvalSettings(agent="embedded", model=str(dense_path),
                            policy_options={"dtype": torch.float32, "device": "cpu", "max_new_tokens": 8,
                                            "kv_cache_memory": "64MiB", "max_model_len": 16384})
    entries = run_suite(tasks, tmp_path / "out", settings, parallel=2, log=lines.append)
    assert any(line.startswith("one embedded engine for 2 workers at http://127.0.0.1:") for line in lines)
    # a random model writes no usable tool call: each run ends as a parse failure, scored 0
    assert sorted((e["status"], e["steps"]) for e in entries) == [("scored", 0), ("scored", 0)]
    for t in tasks:
        records = [json.loads(line) for line in
                   (tmp_path / "out" / t.domain / t.id / "traj.jsonl").read_text().splitlines()]
        assert records and all(r["status"] == "parse_error" and 0 < r["tokens_out"] <= 8 for r in records)
