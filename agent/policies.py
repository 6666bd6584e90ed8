"""Policies turn a message list into the model's reply text.

* `EmbeddedPolicy`: our PyTorch runtime (``model.Qwen3VL``) on the serving engine (``model.engine``), in process:
  consecutive steps reuse the cached prefix of the conversation and the vision features of screenshots still in it.
* `OpenAIPolicy`: any OpenAI-compatible chat-completions server (vLLM, SGLang, DashScope compatible mode).
* `ScriptedPolicy`: fixed replies, or the replies recorded in a run directory (replay without a model).

Messages are in the Qwen/HF chat format with PIL images (``{"type": "image", "image": PIL.Image}``).
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from PIL import Image

from model.config import DEFAULT_MODEL

EXHAUSTED_REPLY = ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", "status": "failure"}}'
                   "\n</tool_call>")


@dataclass
class PolicyReply:
    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None  # "stop", "length" (cut off at the token limit: never executed), None unknown


class PolicyError(RuntimeError):
    """The policy could not produce a reply (server unreachable, bad response, model failure)."""


class Policy(Protocol):
    def respond(self, messages: list[dict]) -> PolicyReply: ...


# ---------------------------------------------------------------- scripted

class ScriptedPolicy:
    """Returns ``responses`` in order; once exhausted, a terminate(failure) call."""

    kind = "scripted"

    def __init__(self, responses: list[str]):
        if isinstance(responses, str) or not all(isinstance(r, str) for r in responses):
            raise ValueError("ScriptedPolicy needs a list of reply strings")
        self.responses = list(responses)
        self.calls = 0
        self.last_messages: list[dict] | None = None

    def respond(self, messages: list[dict]) -> PolicyReply:
        self.last_messages = messages
        i = self.calls
        self.calls += 1
        return PolicyReply(self.responses[i] if i < len(self.responses) else EXHAUSTED_REPLY)

    @classmethod
    def from_trajectory(cls, run_dir_or_traj_jsonl: Path | str) -> "ScriptedPolicy":
        """The replies recorded in a run (declined ones left out: they were never executed)."""
        from agent.trajectory import load_steps

        steps = load_steps(run_dir_or_traj_jsonl)
        if not steps:
            raise ValueError(f"{run_dir_or_traj_jsonl} holds no recorded steps to replay")
        # one reply per model turn (a turn with several calls has one line per call), declined turns left out
        return cls([s.raw_response for s in steps if s.call_index == 0 and s.status != "declined"])

    @classmethod
    def from_file(cls, path: Path | str) -> "ScriptedPolicy":
        """A JSON list of replies, a run directory, or a traj.jsonl file."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"script {path} does not exist")
        if path.is_dir() or path.suffix == ".jsonl":
            return cls.from_trajectory(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"script {path} is not JSON (expected a list of reply strings): {e}") from None
        if not isinstance(data, list) or not all(isinstance(r, str) for r in data):
            raise ValueError(f"script {path} must be a JSON list of reply strings")
        return cls(data)


# ---------------------------------------------------------------- OpenAI-compatible

def image_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(messages: list[dict]) -> list[dict]:
    """Qwen-format messages → chat-completions messages (images as base64 PNG data URLs)."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        parts = []
        for c in content:
            if c.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(c["image"])}})
            elif c.get("type") == "text":
                parts.append({"type": "text", "text": c["text"]})
            else:
                raise ValueError(f"unsupported message part type {c.get('type')!r}")
        if m["role"] == "assistant":  # plain string: what every server accepts for assistant turns
            out.append({"role": "assistant", "content": "".join(p["text"] for p in parts if p["type"] == "text")})
        else:
            out.append({"role": m["role"], "content": parts})
    return out


class OpenAIPolicy:
    """Chat completions over HTTP; connection errors, 429 and 5xx are retried with exponential backoff."""

    kind = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 300.0,
                 retries: int = 3, backoff: float = 1.0, **sampling):
        import httpx

        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url must be an http(s) URL such as http://localhost:8000/v1, got {base_url!r}")
        if not model:
            raise ValueError("--model NAME is required with --base-url (the model name the server serves)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = max(1, retries)
        self.backoff = backoff
        self.sampling = {"temperature": 0.0, "max_tokens": 2048, **sampling}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"

    def respond(self, messages: list[dict]) -> PolicyReply:
        import httpx

        body = {"model": self.model, "messages": to_openai_messages(messages), **self.sampling}
        last = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                r = self._client.post(self.url, json=body)
            except (httpx.TransportError,) as e:  # refused, DNS, timeouts, dropped connections
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise PolicyError(f"model server {self.url} rejected the request: HTTP {r.status_code}: {r.text[:300]}")
            return self._reply(r)
        raise PolicyError(f"cannot reach the model server at {self.url} after {self.retries} tries ({last})")

    def _reply(self, r) -> PolicyReply:
        try:
            data = r.json()
            choice = data["choices"][0]
            msg = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PolicyError(f"model server {self.url} sent a response that is not a chat completion: "
                              f"{r.text[:300]}") from None
        text = msg.get("content") or ""
        if isinstance(text, list):
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        # A server started with a tool-call parser returns calls separately: put them back as the model wrote them.
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {})
            args = fn.get("arguments", "{}")
            try:
                args = json.loads(args) if isinstance(args, str) else args
            except json.JSONDecodeError:
                pass
            text += ("\n" if text else "") + "<tool_call>\n" + json.dumps(
                {"name": fn.get("name"), "arguments": args}, ensure_ascii=False) + "\n</tool_call>"
        reasoning = msg.get("reasoning_content")
        if reasoning:
            text = f"<think>\n{reasoning}\n</think>\n\n{text}"
        usage = data.get("usage") or {}
        return PolicyReply(text, usage.get("prompt_tokens"), usage.get("completion_tokens"), choice.get("finish_reason"))

    def close(self) -> None:
        self._client.close()


# ---------------------------------------------------------------- embedded runtime

class EmbeddedPolicy:
    """Runs Qwen3-VL in process with ``model.Qwen3VL`` (a local path or a Hub id in the local cache) on the serving
    engine, so each step prefills only what the last step's conversation did not already have."""

    kind = "embedded"

    def __init__(self, model: str = DEFAULT_MODEL, dtype=None, device=None, *, max_new_tokens: int = 512,
                 progress=None, constrained: bool = True, kv_cache_memory: str | float = "0.2",
                 max_model_len: int | None = None, quantize: str | None = None, **sampling):
        try:
            from model import Qwen3VL
            from model.engine import Engine, EngineConfig
        except ImportError as e:
            raise PolicyError(f"the embedded runtime is unavailable ({e}); use --base-url with a server") from e
        p = Path(model).expanduser()
        looks_local = model.startswith((".", "/", "~")) or p.exists()
        if looks_local and not p.exists():
            raise FileNotFoundError(f"model directory {model} does not exist")
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs = {"device": device, "progress": progress, "quantize": quantize,
                  **({"dtype": dtype} if dtype is not None else {})}
        self.model_name = model
        self.model = Qwen3VL.from_pretrained(str(p) if looks_local else model, **kwargs)
        try:
            self.engine = Engine(self.model, EngineConfig(max_num_seqs=1, kv_cache_memory=kv_cache_memory,
                                                          max_model_len=max_model_len))
        except BaseException:
            self.model.close()
            raise
        self.max_new_tokens = max_new_tokens
        self.sampling = {"temperature": 0.0, **sampling}
        self.on_token: Callable[[int], None] | None = None   # called with the count of tokens generated so far
        # grammar-constrained decoding (model/constraints.py): every reply is one valid computer_use call
        self.constrained = constrained
        self._grammar = None

    def respond(self, messages: list[dict]) -> PolicyReply:
        e = self.engine
        constraint = None
        if self.constrained:
            if self._grammar is None:
                from model.constraints import ToolCallGrammar

                m = self.model
                self._grammar = ToolCallGrammar(m.preprocessor.tokenizer, m.config.text.vocab_size, m.eos_token_ids)
            constraint = self._grammar.constraint()
        try:
            handle = e.submit(e.request(messages, max_tokens=self.max_new_tokens, constraint=constraint,
                                        **self.sampling))
        except ValueError as err:   # e.g. the conversation outgrew the context: this step cannot be answered
            raise PolicyError(f"the embedded model cannot answer: {err}") from None
        ids, text, out = [], [], None
        for out in handle:
            ids += out.token_ids
            text.append(out.text)
            if self.on_token is not None and out.token_ids:
                self.on_token(len(ids))
        if out.finish_reason == "error":
            raise PolicyError(f"the embedded model failed: {out.error}")
        stop = e.eos_token_ids | {self.model.config.pad_token_id}
        return PolicyReply("".join(text), out.prompt_tokens, sum(1 for i in ids if i not in stop), out.finish_reason)

    def close(self) -> None:
        self.engine.close()
        self.model.close()
