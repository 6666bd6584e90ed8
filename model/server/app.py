"""The OpenAI-compatible HTTP API over an `Engine` (FastAPI on uvicorn; `qvl-agent serve` starts it).

POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics. Every error is an
OpenAI-style `{"error": {"message", "type", "param", "code"}}` body: 400 for a bad request (malformed JSON, wrong
field types, an image that does not decode, a prompt over --max-model-len), 401 for a wrong or missing key, 404 for
an unknown model (as vLLM and OpenAI), 413 for a body over the limit. A client that disconnects cancels its request,
which frees its slot and KV blocks at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from model.engine import Engine, EngineDead, EngineOutput, EngineRequest, SamplingOptions
from model.engine.inputs import request_from_ids
from model.server.media import MediaPolicy, to_qwen_messages
from model.server.metrics import ServerMetrics
from model.server.protocol import APIError, ChatCompletionRequest, CompletionRequest, _Sampling
from model.server.structured import constraint_for
from model.server.tool_calls import TOOL_CALL_START, parse_tool_calls

# (request, tokenizer) -> TokenConstraint | None; default: model/server/structured.py
ConstraintFactory = Callable[[ChatCompletionRequest, object], object]


@dataclass
class ServerSettings:
    served_model_name: str
    api_key: str | None = None
    max_body_bytes: int = 100 * 2 ** 20
    media: MediaPolicy = field(default_factory=MediaPolicy)
    model_path: str = ""


class _Guard:
    """Pure ASGI: the body-size limit (413) and the API key on /v1 (401), before FastAPI reads anything."""

    def __init__(self, app, settings: ServerSettings):
        self.app, self.settings = app, settings

    @staticmethod
    async def _reply(send, status: int, error: APIError) -> None:
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        key = self.settings.api_key
        if key and scope["path"].startswith("/v1"):
            if headers.get(b"authorization", b"").decode("latin-1") != f"Bearer {key}":
                return await self._reply(send, 401, APIError(401, "Unauthorized: a wrong or missing API key",
                                                             "AuthenticationError"))
        limit = self.settings.max_body_bytes
        too_large = APIError(413, f"the request body is larger than the server's limit of {limit} bytes",
                             "RequestTooLarge")
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            return await self._reply(send, 413, too_large)
        state = {"seen": 0, "answered": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit and not state["answered"]:   # a chunked body without Content-Length
                    state["answered"] = True
                    await self._reply(send, 413, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not state["answered"]:
                await send(message)

        return await self.app(scope, counted_receive, guarded_send)


def _options(body: _Sampling, prompt_len: int, max_model_len: int, max_tokens: int | None,
             skip_special_tokens: bool) -> SamplingOptions:
    if body.n != 1:
        raise APIError(400, "only n=1 is supported", param="n")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if max_tokens is None:   # OpenAI's default: up to the context length
        max_tokens = max(1, max_model_len - prompt_len)
    return SamplingOptions(
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=max(0, body.top_k or 0), repetition_penalty=body.repetition_penalty or 1.0,
        presence_penalty=body.presence_penalty or 0.0, frequency_penalty=body.frequency_penalty or 0.0,
        max_tokens=max_tokens, stop=stop, stop_token_ids=list(body.stop_token_ids or []), ignore_eos=body.ignore_eos,
        seed=body.seed, skip_special_tokens=skip_special_tokens)


def _usage(out: EngineOutput) -> dict:
    return {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": out.cached_tokens}}


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def build_app(engine: Engine, settings: ServerSettings, constraint_factory: ConstraintFactory | None = None):
    """The ASGI application (FastAPI inside the body-size/API-key guard)."""
    app = FastAPI(title="qvl-agent", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = ServerMetrics(engine, settings.served_model_name)
    app.state.engine, app.state.metrics = engine, metrics
    model = engine.model
    tokenizer = model.preprocessor.tokenizer
    if constraint_factory is None:
        def constraint_factory(body: ChatCompletionRequest, tok):
            return constraint_for(body, tok, model.config.text.vocab_size, sorted(engine.eos_token_ids))

    @app.exception_handler(APIError)
    async def api_error(_: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        errors = e.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        if first.get("type") == "json_invalid":
            message = f"the body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
            where = ""
        else:
            message = f"{where or 'body'}: {first.get('msg', 'invalid request')}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more problems)"
        return JSONResponse(APIError(400, message, param=where or None).body(), status_code=400)

    def check_model(name: str) -> None:
        if name != settings.served_model_name:
            raise APIError(404, f"The model `{name}` does not exist.", "NotFoundError", "model")

    async def submit(req: EngineRequest) -> object:
        try:
            return engine.submit(req, loop=asyncio.get_running_loop())
        except EngineDead as e:
            raise APIError(503, f"the engine stopped: {e}", "ServiceUnavailableError") from None
        except ValueError as e:
            raise APIError(400, str(e)) from None

    async def collect(handle, request: Request) -> EngineOutput | None:
        """All outputs of a request merged; None when the client went away (the request is then cancelled)."""
        parts: list[EngineOutput] = []

        async def consume():
            async for out in handle:
                parts.append(out)

        task = asyncio.create_task(consume())
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=0.25)
                if not done and await request.is_disconnected():
                    handle.cancel()
                    task.cancel()
                    return None
        finally:
            if not task.done():
                handle.cancel()
                task.cancel()
        last = parts[-1]
        last.token_ids = [t for p in parts for t in p.token_ids]
        last.text = "".join(p.text for p in parts)
        return last

    async def start(body, build: Callable) -> tuple[EngineRequest, object, int]:
        """Check the model name, build the engine request in a worker thread, submit it."""
        check_model(body.model)
        req = await run_in_threadpool(build, body)
        return req, await submit(req), int(time.time())

    async def answer(handle, request: Request) -> EngineOutput | None:
        """The whole non-streamed output (None: the client left), counted in the metrics."""
        out = await collect(handle, request)
        if out is not None:
            if out.finish_reason == "error":
                raise APIError(500, f"the model failed on this request: {out.error}", "InternalServerError")
            metrics.finished(out)
        return out

    # ------------------------------------------------------------------ chat

    def chat_request(body: ChatCompletionRequest) -> EngineRequest:
        """Runs in a worker thread: template, images, tokens (the CPU-heavy part of a request)."""
        tools = [t.function.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
        tools = [{"type": "function", "function": t} for t in tools] if tools else None
        use_tools = bool(tools) and body.tool_choice != "none"
        messages = to_qwen_messages(body.messages, settings.media)
        try:
            text, vision = model.preprocessor.render(messages, add_generation_prompt=True, tools=tools)
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        max_tokens = body.max_completion_tokens or body.max_tokens
        options = _options(body, len(ids), engine.max_model_len, max_tokens,
                           body.skip_special_tokens and not use_tools)
        constraint = constraint_factory(body, tokenizer)
        try:
            return request_from_ids(ids, vision, model.config, options, constraint, f"chatcmpl-{uuid.uuid4().hex}")
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None

    def chat_answer(body: ChatCompletionRequest, out: EngineOutput) -> tuple[dict, str]:
        text = out.text
        reason = out.finish_reason
        message: dict = {"role": "assistant", "content": text}
        if body.tools and body.tool_choice != "none":
            content, calls = parse_tool_calls(text)
            if calls:
                message = {"role": "assistant", "content": content, "tool_calls": calls}
                reason = "tool_calls"
        return message, reason

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest, request: Request):
        req, handle, created = await start(body, chat_request)
        if body.stream:
            return StreamingResponse(chat_stream(body, req, handle, created), media_type="text/event-stream")
        out = await answer(handle, request)
        if out is None:
            return Response(status_code=499)
        message, reason = chat_answer(body, out)
        return {"id": req.request_id, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
                "usage": _usage(out)}

    async def chat_stream(body: ChatCompletionRequest, req: EngineRequest, handle, created: int):
        base = {"id": req.request_id, "object": "chat.completion.chunk", "created": created, "model": body.model}
        usage = body.stream_options is not None and body.stream_options.include_usage
        tools = bool(body.tools) and body.tool_choice != "none"

        def chunk(delta: dict, reason: str | None = None) -> str:
            return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}],
                         **({"usage": None} if usage else {})})

        finished = False
        held = ""      # with tools: text from the first "<tool_call>" on is held until the end
        try:
            yield chunk({"role": "assistant", "content": ""})
            async for out in handle:
                text = out.text
                if tools:
                    held += text
                    cut = held.find(TOOL_CALL_START)
                    if cut < 0:   # keep back a possible beginning of the tag
                        keep = next((k for k in range(min(len(held), len(TOOL_CALL_START) - 1), 0, -1)
                                     if TOOL_CALL_START.startswith(held[-k:])), 0)
                        text, held = held[:len(held) - keep], held[len(held) - keep:]
                    else:
                        text, held = held[:cut], held[cut:]
                    if out.finished:
                        text, held = text + held, ""
                if out.finished:
                    finished = True
                    if out.finish_reason == "error":
                        yield _sse(APIError(500, f"the model failed on this request: {out.error}",
                                            "InternalServerError").body())
                        break
                    metrics.finished(out)
                    reason = out.finish_reason
                    if tools and TOOL_CALL_START in text:
                        content, calls = parse_tool_calls(text)
                        if calls:
                            prefix = text[:text.index(TOOL_CALL_START)]
                            if prefix:
                                yield chunk({"content": prefix})
                            yield chunk({"tool_calls": [dict(call, index=i) for i, call in enumerate(calls)]})
                            text, reason = "", "tool_calls"
                    if text:
                        yield chunk({"content": text})
                    yield chunk({}, reason)
                    if usage:
                        yield _sse({**base, "choices": [], "usage": _usage(out)})
                elif text:
                    yield chunk({"content": text})
            yield _sse("[DONE]")
        finally:
            if not finished:   # the client went away (or the server stops): free the slot and its blocks
                handle.cancel()

    # ------------------------------------------------------------------ completions

    def completion_request(body: CompletionRequest) -> EngineRequest:
        if isinstance(body.prompt, str):
            ids = tokenizer(body.prompt, add_special_tokens=False)["input_ids"]
        else:
            ids = list(body.prompt)
        vision_tokens = {model.config.image_token_id, model.config.video_token_id}
        if vision_tokens & set(ids):
            raise APIError(400, "/v1/completions takes text only; send images to /v1/chat/completions",
                           param="prompt")
        options = _options(body, len(ids), engine.max_model_len, body.max_tokens or 16, body.skip_special_tokens)
        return EngineRequest(ids, [], options, None, f"cmpl-{uuid.uuid4().hex}")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        req, handle, created = await start(body, completion_request)
        base = {"id": req.request_id, "object": "text_completion", "created": created, "model": body.model}
        echo = tokenizer.decode(req.prompt_token_ids) if body.echo else ""
        if body.stream:
            return StreamingResponse(completion_stream(body, base, handle, echo), media_type="text/event-stream")
        out = await answer(handle, request)
        if out is None:
            return Response(status_code=499)
        return {**base, "choices": [{"index": 0, "text": echo + out.text, "finish_reason": out.finish_reason,
                                     "logprobs": None}], "usage": _usage(out)}

    async def completion_stream(body: CompletionRequest, base: dict, handle, echo: str):
        usage = body.stream_options is not None and body.stream_options.include_usage
        finished = False
        try:
            if echo:
                yield _sse({**base, "choices": [{"index": 0, "text": echo, "finish_reason": None, "logprobs": None}]})
            async for out in handle:
                if out.finished:
                    finished = True
                    if out.finish_reason == "error":
                        yield _sse(APIError(500, f"the model failed: {out.error}", "InternalServerError").body())
                        break
                    metrics.finished(out)
                yield _sse({**base, "choices": [{"index": 0, "text": out.text, "logprobs": None,
                                                 "finish_reason": out.finish_reason if out.finished else None}]})
                if out.finished and usage:
                    yield _sse({**base, "choices": [], "usage": _usage(out)})
            yield _sse("[DONE]")
        finally:
            if not finished:
                handle.cancel()

    # ------------------------------------------------------------------ the rest

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": settings.served_model_name, "object": "model",
                                            "created": int(time.time()), "owned_by": "qvl-agent",
                                            "root": settings.model_path or settings.served_model_name,
                                            "max_model_len": engine.max_model_len}]}

    @app.get("/health")
    async def health():
        if engine.error is not None:
            return JSONResponse({"status": "error", "error": engine.error}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(_Guard, settings=settings)
    return app

