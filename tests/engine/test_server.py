"""`qvl-agent serve` through the official `openai` client on loopback: greedy output identical to generate(),
streaming with the usage chunk, images, tool calls returned as tool_calls, /v1/models, /metrics; 16 concurrent
mixed requests equal to the same requests alone; every bad request gets its 4xx and the next one is served; a
client that disconnects frees its slot and KV blocks; a bounded load test; the prefix cache's TTFT."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from model.parallel import free_port
from serving import data_url, picture, serve

REPO = Path(__file__).resolve().parents[2]


def client(server, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=kw.pop("api_key", "none"), max_retries=0, **kw)


def image_messages(*seeds: int, text: str = "What is in the picture?") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": data_url(picture(s, 70 + 10 * s, 100))}} for s in seeds]
    return [{"role": "user", "content": parts + [{"type": "text", "text": text}]}]


def generate_text(model, messages_qwen, n: int) -> tuple[str, int, int]:
    inputs = model.preprocessor(messages_qwen)
    ids = model.generate(**inputs, max_new_tokens=n)[0].tolist()
    stop = set(model.eos_token_ids)
    return model.preprocessor.decode([i for i in ids if i not in stop]), inputs["input_ids"].shape[1], len(ids)


def wait_idle(engine, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = engine.stats()
        if s.running == 0 and s.waiting == 0 and s.kv_blocks_free == s.kv_blocks:
            return
        time.sleep(0.05)
    raise AssertionError(f"the engine is not idle: {engine.stats()}")


def test_chat_equals_generate_streaming_and_models(server, dense_model):
    c = client(server)
    assert [m.id for m in c.models.list().data] == ["tiny"]
    qwen = [{"role": "user", "content": [{"type": "image", "image": picture(1, 80, 100)},
                                         {"type": "text", "text": "What is in the picture?"}]}]
    want, n_prompt, n_out = generate_text(dense_model, qwen, 20)
    r = c.chat.completions.create(model="tiny", messages=image_messages(1), max_tokens=20, temperature=0)
    assert r.choices[0].message.content == want and r.choices[0].message.role == "assistant"
    assert r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (n_prompt, n_out)
    assert r.usage.total_tokens == n_prompt + n_out and r.usage.prompt_tokens_details.cached_tokens >= 0

    chunks = list(c.chat.completions.create(model="tiny", messages=image_messages(1), max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == want
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == n_out
    assert chunks[-2].choices[0].finish_reason == r.choices[0].finish_reason
    assert len({ch.id for ch in chunks}) == 1
    # the second identical request reuses the cached prefix and says so
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > n_prompt // 2

    text = c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=8, temperature=0)
    ids = dense_model.preprocessor.tokenizer("Once upon a time", add_special_tokens=False)["input_ids"]
    import torch

    want_ids = dense_model.generate(torch.tensor([ids]), max_new_tokens=8)[0].tolist()
    assert text.choices[0].text == dense_model.preprocessor.decode(want_ids)
    assert text.usage.prompt_tokens == len(ids)


def test_sixteen_concurrent_mixed_requests_equal_alone(server):
    c = client(server)
    bodies = [dict(messages=[{"role": "user", "content": f"Story number {i}: " + "once " * (i * 3)}]) if i % 3 == 0
              else dict(messages=image_messages(i % 5, text=f"Describe {i}")) if i % 3 == 1
              else dict(messages=image_messages(i % 4, i % 4 + 1, text="Compare " * (i % 5 + 1)))
              for i in range(16)]

    def ask(body):
        return c.chat.completions.create(model="tiny", max_tokens=12 + len(body["messages"][0]["content"]) % 7,
                                         temperature=0, **body).choices[0].message.content

    alone = [ask(b) for b in bodies]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, bodies))
    assert together == alone
    assert len(set(alone)) > 8


class ToolCallText:
    """A TokenConstraint forcing the model to write `text` (then eos): stands in for grammar-constrained decoding."""

    def __init__(self, tokenizer, text: str):
        self.ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [151645]
        self.i = 0

    def mask_logits(self, logits):
        keep = logits[self.ids[self.i]].clone()
        logits.fill_(float("-inf"))
        logits[self.ids[self.i]] = keep

    def advance(self, token_id):
        self.i += 1

    def is_finished(self):
        return self.i >= len(self.ids) - 1


TOOLS = [{"type": "function", "function": {"name": "click", "description": "click a point",
                                           "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]


def test_tool_calls_are_returned_as_tool_calls(engine):
    script = {"text": 'Clicking.\n<tool_call>\n{"name": "click", "arguments": {"x": 12}}\n</tool_call>'}
    live = serve(engine, constraint_factory=lambda body, tok: ToolCallText(tok, script["text"]))
    try:
        c = client(live)
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "click"}], tools=TOOLS,
                                      max_tokens=100)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content == "Clicking."
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "click"
        assert json.loads(call.function.arguments) == {"x": 12} and call.id.startswith("call_")

        chunks = list(c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "click"}],
                                                tools=TOOLS, max_tokens=100, stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip() == "Clicking."
        calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
        assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [(0, "click",
                                                                                                       {"x": 12})]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

        script["text"] = "<tool_call>\n{not json}\n</tool_call>"   # unparsable: the raw text comes back
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "click"}], tools=TOOLS,
                                      max_tokens=100)
        assert r.choices[0].message.content == script["text"] and not r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "stop"
    finally:
        live.stop()


def test_structured_output_follows_the_schema_and_the_tools(server):
    c = client(server)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                               "n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["ok", "n"], "additionalProperties": False}
    r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "answer"}], max_tokens=60,
                                  response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    answer = json.loads(r.choices[0].message.content)
    assert set(answer) == {"ok", "n"} and isinstance(answer["ok"], bool) and 0 <= answer["n"] <= 9
    tools = [{"type": "function", "function": {"name": "press", "parameters": {
        "type": "object", "properties": {"key": {"enum": ["enter", "esc"]}}, "required": ["key"],
        "additionalProperties": False}}}, TOOLS[0]]
    r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "go"}], tools=tools,
                                  tool_choice={"type": "function", "function": {"name": "press"}}, max_tokens=60)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "press"
    assert json.loads(call.function.arguments)["key"] in ("enter", "esc")


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, tmp_path):
    url = server.base_url + "/chat/completions"
    good = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    png = tmp_path / "shot.png"
    picture().save(png)
    bad = [
        (400, dict(content=b'{"model": "tiny", "messages": [', headers={"content-type": "application/json"})),
        (400, dict(content=b"[1, 2]", headers={"content-type": "application/json"})),
        (404, dict(json={**good, "model": "gpt-4"})),
        (400, dict(json={**good, "temperature": "hot"})),
        (400, dict(json={**good, "max_tokens": "many"})),
        (400, dict(json={**good, "messages": "hello"})),
        (400, dict(json={**good, "messages": []})),
        (400, dict(json={**good, "messages": [{"role": "wizard", "content": "hi"}]})),
        (400, dict(json={**good, "n": 2})),
        (400, dict(json={**good, "max_tokens": 0})),
        (400, dict(json={**good, "top_p": 5})),
        (400, dict(json={**good, "messages": image_messages(0)[:0] + [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}]}]})),
        (400, dict(json={**good, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]}]})),
        (400, dict(json={**good, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"file://{png}"}}]}]})),
        (400, dict(json={**good, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]})),
        (400, dict(json={**good, "messages": [{"role": "user", "content": "x" * 17000}]})),
        (400, dict(json={**good, "max_tokens": 16380})),
        (400, dict(json={**good, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})),
        (400, dict(json={**good, "tools": [{"type": "function", "function": {"name": "f"}}],
                         "tool_choice": {"type": "function", "function": {"name": "g"}}})),
    ]
    with httpx.Client(timeout=60) as http:
        for status, kwargs in bad:
            r = http.post(url, **kwargs)
            assert r.status_code == status, (kwargs, r.text)
            error = r.json()["error"]
            assert error["code"] == status and error["message"] and error["type"]
            ok = http.post(url, json=good)
            assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] is not None
        r = http.post(server.base_url + "/completions", json={"model": "tiny", "prompt": {"a": 1}})
        assert r.status_code == 400
        r = http.post(url, json={**good, "unknown_field": {"x": 1}})   # unknown fields are ignored
        assert r.status_code == 200
        assert http.get(server.base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}
    # the openai client maps them to its exceptions
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client(server).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=16380)
    with pytest.raises(openai.NotFoundError):
        client(server).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_api_key_body_limit_and_local_files(engine, tmp_path):
    from model.server.media import MediaPolicy

    png = tmp_path / "shot.png"
    picture(3).save(png)
    live = serve(engine, api_key="sekret", max_body_bytes=4000, media=MediaPolicy.from_args(str(tmp_path), []))
    try:
        url = live.base_url + "/chat/completions"
        good = {"model": "tiny", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"file://{png}"}}, {"type": "text", "text": "hi"}]}],
            "max_tokens": 3}
        auth = {"Authorization": "Bearer sekret"}
        with httpx.Client(timeout=60) as http:
            assert http.post(url, json=good).status_code == 401
            r = http.post(url, json=good, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["error"]["code"] == 401
            assert http.get(live.base_url + "/models").status_code == 401
            assert http.get(live.base_url.removesuffix("/v1") + "/health").status_code == 200
            assert http.post(url, json=good, headers=auth).status_code == 200      # file:// under the allowed dir
            big = {**good, "messages": [{"role": "user", "content": "x" * 5000}]}
            r = http.post(url, json=big, headers=auth)
            assert r.status_code == 413 and r.json()["error"]["code"] == 413
            chunked = http.post(url, content=iter([json.dumps(big).encode()[i:i + 1000] for i in range(0, 6000, 1000)]),
                                headers={**auth, "content-type": "application/json"})
            assert chunked.status_code == 413
            outside = {**good, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "file:///etc/hostname"}}]}]}
            assert http.post(url, json=outside, headers=auth).status_code == 400
            assert http.post(url, json=good, headers=auth).status_code == 200
        with pytest.raises(openai.AuthenticationError):
            client(live, api_key="wrong").models.list()
        assert client(live, api_key="sekret").models.list().data[0].id == "tiny"
    finally:
        live.stop()


def test_client_disconnect_frees_slot_and_blocks(server, engine):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go on forever"}], "max_tokens": 5000,
            "ignore_eos": True}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", server.base_url + "/chat/completions", json={**body, "stream": True}) as r:
            lines = r.iter_lines()
            for _ in range(6):
                next(lines)
            assert engine.stats().running == 1
        wait_idle(engine)
        with pytest.raises(httpx.ReadTimeout):
            http.post(server.base_url + "/chat/completions", json=body, timeout=1.0)
        wait_idle(engine)
        assert http.post(server.base_url + "/chat/completions",
                         json={**body, "max_tokens": 2}).status_code == 200


def test_metrics(server):
    c = client(server)
    c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "count me"}], max_tokens=4)
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:time_per_output_token_seconds_count",
                 "vllm:e2e_request_latency_seconds_sum", "vllm:prefix_cache_queries_total",
                 "vllm:prefix_cache_hits_total", "vllm:request_success_total", "vllm:generation_tokens_total"):
        assert name in text, name
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["vllm:e2e_request_latency_seconds_count"] >= 1 and values["vllm:generation_tokens_total"] >= 4


def test_bounded_load_200_requests_at_concurrency_32(server, engine, record_property):
    tokenizer = engine.model.preprocessor.tokenizer

    async def main():
        c = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)
        gate = asyncio.Semaphore(32)

        async def one(i: int):
            prompt = f"request {i} " + "." * (i % 17)
            async with gate:
                t0 = time.perf_counter()
                r = await c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}],
                                                    max_tokens=4 + i % 5, temperature=0)
                return i, prompt, r, time.perf_counter() - t0

        try:
            return await asyncio.gather(*(one(i) for i in range(200)))
        finally:
            await c.close()

    results = asyncio.run(main())
    assert len(results) == 200 and len({r.id for _, _, r, _ in results}) == 200
    pre = engine.model.preprocessor

    def prompt_len(prompt: str) -> int:
        text, _ = pre.render([{"role": "user", "content": prompt}])
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    for i, prompt, r, _ in results:     # each answer belongs to its own request
        assert r.usage.prompt_tokens == prompt_len(prompt)
        assert r.usage.completion_tokens <= 4 + i % 5
    latencies = sorted(s for *_, s in results)
    p50, p99 = latencies[100], latencies[197]
    record_property("load_p50_s", p50)
    record_property("load_p99_s", p99)
    print(f"\n200 requests at concurrency 32: p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms")
    wait_idle(engine)
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200


def screenshot() -> "Image.Image":
    """A 1280x720 desktop-like picture: flat panels, a title bar, some text-like noise (compresses like a screen)."""
    import numpy as np
    from PIL import Image

    a = np.full((720, 1280, 3), 236, dtype=np.uint8)
    a[:40] = (50, 60, 90)
    a[80:600, 60:400] = (255, 255, 255)
    a[100:580:24, 80:380] = np.random.default_rng(0).integers(0, 120, (20, 300, 3), dtype=np.uint8)
    a[650:700, 500:780] = (20, 120, 220)
    return Image.fromarray(a)


def test_prefix_cache_cuts_ttft_of_a_repeated_agent_prompt(server, record_property):
    from agent import prompts

    system = prompts.system_message("qwen")["content"]
    system = system if isinstance(system, str) else "".join(p["text"] for p in system)
    shot = screenshot()
    messages = [{"role": "system", "content": system}, {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(shot)}}, {"type": "text", "text": "Open the settings."}]}]
    c = client(server)

    def ttft() -> tuple[float, object]:
        t0 = time.perf_counter()
        first, usage = None, None
        for ch in c.chat.completions.create(model="tiny", messages=messages, max_tokens=4, stream=True,
                                            stream_options={"include_usage": True}):
            if first is None and ch.choices and ch.choices[0].delta.content:
                first = time.perf_counter() - t0
            usage = ch.usage or usage
        return first, usage

    cold, usage_cold = ttft()
    warm, usage_warm = ttft()
    record_property("ttft_cold_s", cold)
    record_property("ttft_warm_s", warm)
    print(f"\nTTFT {usage_cold.prompt_tokens}-token prompt: cold {cold * 1e3:.0f} ms, warm {warm * 1e3:.0f} ms "
          f"({warm / cold:.2f}x), cached {usage_warm.prompt_tokens_details.cached_tokens}")
    assert usage_cold.prompt_tokens > 2000
    assert usage_warm.prompt_tokens_details.cached_tokens >= usage_cold.prompt_tokens - 16
    assert warm <= 0.3 * cold


def test_serve_command_answers_and_stops_on_ctrl_c(dense_path, dense_model):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "serve", "--model", str(dense_path), "--dtype",
                             "float32", "--port", str(port), "--served-model-name", "tiny", "--kv-cache-memory",
                             "64MiB", "--max-model-len", "4096"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
            time.sleep(0.2)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        want, _, _ = generate_text(dense_model, [{"role": "user", "content": "Hello there"}], 10)
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                      max_tokens=10, temperature=0)
        assert r.choices[0].message.content == want
        # Ctrl-C while a streamed request runs: it is answered to the end, then the server stops
        stream = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                           max_tokens=300, stream=True, extra_body={"ignore_eos": True})
        first = next(iter(stream))
        proc.send_signal(signal.SIGINT)
        rest = list(stream)
        assert first.choices[0].delta.role == "assistant" and rest[-1].choices[0].finish_reason == "length"
        assert proc.wait(60) == 0
        out = proc.stdout.read()
        assert "serving 'tiny'" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
