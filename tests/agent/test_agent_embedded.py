"""The embedded policy on a tiny random checkpoint: real steps through model.Qwen3VL; its nonsense output
ends the run cleanly as a parse failure with the raw text kept in the trajectory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import tiny_checkpoints
from agent.loop import TRUNCATED, AgentConfig, run_episode
from agent.parsing import parse_response
from agent.policies import EmbeddedPolicy
from agent.trajectory import load_steps

_spec = importlib.util.spec_from_file_location("agent_loop_tests", Path(__file__).with_name("test_agent_loop.py"))
_fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fakes)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    path = tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory)
    # unconstrained: this test is about the raw text of a model that writes no call (model/constraints.py
    # keeps the default policy's replies valid; tests/model/test_constraints.py covers that)
    return EmbeddedPolicy(str(path), dtype=torch.float32, device="cpu", max_new_tokens=12, constrained=False)


@pytest.mark.slow
def test_embedded_policy_nonsense_ends_as_parse_error_with_raw_text(tiny_policy, tmp_path):
    env = _fakes.FakeEnv(size=(320, 200))
    seen = []
    respond = tiny_policy.respond

    def recording(messages):
        reply = respond(messages)
        seen.append(reply)
        return reply

    tiny_policy.respond = recording
    try:
        res = run_episode(env, tiny_policy, "Open the settings", env.reset(),
                          config=AgentConfig(max_parse_retries=1), out_dir=tmp_path / "run")
    finally:
        del tiny_policy.respond
    assert res.status == "parse_error" and res.steps == 0
    assert env.steps == []  # nothing was executed
    assert len(seen) == 2  # the first reply + one retry with the error fed back
    recs = load_steps(tmp_path / "run")
    assert [r.status for r in recs] == ["parse_error", "parse_error"]
    for rec, reply in zip(recs, seen):
        assert rec.raw_response == reply.text and reply.text  # the model's own text, verbatim
        # 12 random tokens: either no call, or cut off at the limit (never executed either way)
        assert rec.parse_error == (TRUNCATED if reply.finish_reason == "length" else parse_response(reply.text).error)
        assert 0 < rec.tokens_out <= 12
        assert rec.tokens_in > 3886 // 4  # the system prompt alone is thousands of byte tokens
        assert rec.latency.policy > 0
    # the retry prompt is longer: it carries the bad reply and the error message
    assert recs[1].tokens_in > recs[0].tokens_in
    assert (tmp_path / "run" / "report.html").exists()


def test_missing_local_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EmbeddedPolicy(str(tmp_path / "nope"))
