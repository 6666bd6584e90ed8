"""The model-backed eval agents end to end: `--agent openai` against a local chat-completions stub, and
`embedded` on a tiny random checkpoint, both running bundled tasks in eval worker processes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import tiny_checkpoints
from agent.cli import main
from environments.suite import EvalSettings, load_tasks, run_suite

FAIL_REPLY = ('I cannot do this here.\n<tool_call>\n{"name": "computer_use", "arguments": '
              '{"action": "terminate", "status": "failure"}}\n</tool_call>')


@pytest.fixture()
def chat_stub():
    """A chat-completions server that always answers FAIL and keeps the requests it got."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": FAIL_REPLY}}],
                               "usage": {"prompt_tokens": 100, "completion_tokens": 20}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    server.shutdown()
    server.server_close()


def test_openai_agent_through_eval(chat_stub, tmp_path):
    base_url, requests = chat_stub
    out = tmp_path / "out"
    tasks = [t for t in load_tasks() if t.domain == "settings"]
    assert main(["eval", str(tasks[0].path.parent), "--agent", "openai", "--base-url", base_url,
                 "--model", "qwen3-vl-test", "--api-key", "sk-test", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    got = {e["id"]: (e["status"], e["score"], e["steps"]) for e in summary["tasks"]}
    assert got == {t.id: ("scored", 1.0 if t.evaluator.func == "infeasible" else 0.0, 1) for t in tasks}
    assert summary["run"]["agent"] == "openai" and summary["run"]["model"] == "qwen3-vl-test"

    assert len(requests) == len(tasks)  # one model turn per task
    instructions = {t.instruction for t in tasks}
    for r in requests:
        assert r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer sk-test"
        assert r["body"]["model"] == "qwen3-vl-test"
        user = r["body"]["messages"][-1]
        texts = [p.get("text", "") for p in user["content"] if p.get("type") == "text"]
        images = [p for p in user["content"] if p.get("type") == "image_url"]
        assert any(any(i in t for i in instructions) for t in texts)
        assert len(images) == 1 and images[0]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.slow
def test_embedded_agent_through_eval(tmp_path_factory, tmp_path):
    checkpoint = tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory)
    task = next(t for t in load_tasks() if t.id == "settings-two-factor-infeasible")
    settings = EvalSettings(agent="embedded", model=str(checkpoint),
                            policy_options={"dtype": torch.float32, "device": "cpu", "max_new_tokens": 8})
    entries = run_suite([task], tmp_path / "out", settings)
    # a random model writes no usable tool call: the run ends as a parse failure and is scored 0, not FAIL
    assert [(e["status"], e["score"], e["steps"]) for e in entries] == [("scored", 0.0, 0)]
    records = [json.loads(line) for line in
               (tmp_path / "out" / task.domain / task.id / "traj.jsonl").read_text().splitlines()]
    assert records and all(r["status"] == "parse_error" and r["raw_response"] for r in records)
    assert all(0 < r["tokens_out"] <= 8 for r in records)
