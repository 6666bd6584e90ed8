"""The OpenAI-compatible policy against a local stub chat-completions server."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from agent import prompts
from agent.loop import AgentConfig, run_episode
from agent.policies import OpenAIPolicy, PolicyError
from agent.trajectory import load_steps

GOLDEN = Path(__file__).parent / "golden"


def _loop_tests():
    """The in-test environment of test_agent_loop.py (tests/agent is not on sys.path)."""
    spec = importlib.util.spec_from_file_location("agent_loop_tests", Path(__file__).with_name("test_agent_loop.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fakes = _loop_tests()
FakeEnv, screen = _fakes.FakeEnv, _fakes.screen


class Stub:
    """Serves queued (status, body) answers at /v1/chat/completions and records each request body."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.headers.append(dict(self.headers))
                status, answer = stub.answers.pop(0) if stub.answers else (500, {"error": "no more answers"})
                data = json.dumps(answer).encode()
                self.send_response(status if self.path == "/v1/chat/completions" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def completion(content, tool_calls=None, usage=(1234, 56), finish_reason="stop"):
    msg = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return 200, {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": msg,
                                                                       "finish_reason": finish_reason}],
                 "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}}


@pytest.fixture
def stub_factory():
    stubs = []

    def make(answers):
        s = Stub(answers)
        stubs.append(s)
        return s

    yield make
    for s in stubs:
        s.close()


def decode_image(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def test_openai_policy_drives_a_run_and_sends_prompt_images_and_history(stub_factory, tmp_path):
    click = ('<think>\n\n</think>\n\nAction: Click the bar.\n<tool_call>\n{"name": "computer_use", "arguments": '
             '{"action": "left_click", "coordinate": [250, 500]}}\n</tool_call>')
    done = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>'
    stub = stub_factory([completion(click), completion(done, usage=(2345, 20))])
    env = FakeEnv()
    policy = OpenAIPolicy(stub.base_url, "Qwen/Qwen3-VL-8B-Instruct", api_key="sk-test", top_p=0.8)
    res = run_episode(env, policy, "Press the bar", env.reset(), config=AgentConfig(), out_dir=tmp_path / "r")
    assert res.status == "success" and [a.action for a, _ in env.steps] == ["left_click", "terminate"]

    first, second = stub.requests
    assert stub.headers[0]["Authorization"] == "Bearer sk-test"
    assert first["model"] == "Qwen/Qwen3-VL-8B-Instruct" and first["temperature"] == 0.0 and first["top_p"] == 0.8
    system = first["messages"][0]
    assert system["role"] == "system"
    assert "".join(p["text"] for p in system["content"]) == (GOLDEN / "system_qwen.txt").read_text()
    assert [p["text"] for p in system["content"]][0] == "You are a helpful assistant."
    user = first["messages"][1]
    assert [p["type"] for p in user["content"]] == ["image_url", "text"]
    assert user["content"][1]["text"] == "Press the bar"
    sent = decode_image(user["content"][0]["image_url"]["url"])
    assert sent.size == (400, 250)  # original size: the server's processor resizes
    assert ImageChops.difference(sent, screen(0)).getbbox() is None
    # second request: the previous turn replayed, reasoning stripped, then the new screenshot
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == "Action: Click the bar.\n<tool_call>\n" + click.split("<tool_call>\n")[1]
    assert ImageChops.difference(decode_image(second["messages"][3]["content"][0]["image_url"]["url"]),
                                 screen(1)).getbbox() is None
    recs = load_steps(tmp_path / "r")
    assert (recs[0].tokens_in, recs[0].tokens_out) == (1234, 56) and (recs[1].tokens_in, recs[1].tokens_out) == (2345, 20)


def test_osworld_profile_request(stub_factory):
    stub = stub_factory([completion('Action: Done.\n<tool_call>\n{"name": "computer_use", "arguments": '
                                    '{"action": "terminate", "status": "failure"}}\n</tool_call>')])
    env = FakeEnv()
    res = run_episode(env, OpenAIPolicy(stub.base_url, "m"), "Do X", env.reset(),
                      config=AgentConfig(prompt_profile="osworld"))
    assert res.status == "failure"
    msgs = stub.requests[0]["messages"]
    assert msgs[0]["content"] == [{"type": "text", "text": (GOLDEN / "system_osworld.txt").read_text()}]
    assert msgs[1]["content"][1]["text"] == prompts.user_text("osworld", "Do X", [])


def test_a_reply_cut_off_by_max_tokens_is_never_executed(stub_factory, tmp_path):
    # complete-looking call, but the server says the generation stopped on the token limit
    click = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [1, 2]}}'
    done = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>'
    stub = stub_factory([completion(click, finish_reason="length"), completion(done)])
    env = FakeEnv()
    res = run_episode(env, OpenAIPolicy(stub.base_url, "m"), "x", env.reset(), config=AgentConfig(),
                      out_dir=tmp_path / "r")
    assert res.status == "success" and [a.action for a, _ in env.steps] == ["terminate"]
    recs = load_steps(tmp_path / "r")
    assert [(r.status, r.finish_reason, r.executed) for r in recs] == [("parse_error", "length", False),
                                                                       ("ok", "stop", True)]
    assert "cut off at the token limit" in stub.requests[1]["messages"][-1]["content"][0]["text"]


def test_tool_calls_from_a_hermes_parsing_server_are_put_back_as_text(stub_factory):
    stub = stub_factory([completion(None, tool_calls=[{"id": "c1", "type": "function", "function": {
        "name": "computer_use", "arguments": "{\"action\": \"left_click\", \"coordinate\": [10, 20]}"}}])])
    reply = OpenAIPolicy(stub.base_url, "m").respond([prompts.system_message("qwen")])
    assert reply.text == ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
                          '"coordinate": [10, 20]}}\n</tool_call>')


def test_server_errors_are_retried_with_backoff(stub_factory):
    stub = stub_factory([(503, {"error": "loading"}), (502, {"error": "bad gateway"}), completion("ok")])
    reply = OpenAIPolicy(stub.base_url, "m", retries=3, backoff=0.01).respond([prompts.system_message("qwen")])
    assert reply.text == "ok" and len(stub.requests) == 3


def test_rejected_request_is_a_clear_error(stub_factory):
    stub = stub_factory([(404, {"error": {"message": "The model `nope` does not exist."}})])
    with pytest.raises(PolicyError, match="rejected the request: HTTP 404.*does not exist"):
        OpenAIPolicy(stub.base_url, "nope").respond([prompts.system_message("qwen")])
    assert len(stub.requests) == 1  # 4xx is not retried


def test_unreachable_server_is_a_clear_error_after_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    policy = OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "m", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(PolicyError, match=rf"cannot reach the model server at http://127.0.0.1:{port}/v1/chat/"
                                          r"completions after 2 tries \(ConnectError"):
        policy.respond([prompts.system_message("qwen")])


def test_bad_base_url():
    with pytest.raises(ValueError, match="--base-url must be an http"):
        OpenAIPolicy("localhost:8000", "m")
