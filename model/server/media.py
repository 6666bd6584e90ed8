"""OpenAI chat messages -> the Qwen message format of model/preprocess.py, images fetched under the server's
media policy: data URLs always; local files (file:// or a path) only under --allowed-local-media-path; http(s)
URLs only from hosts in --allowed-media-domains."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from model.preprocess import load_image
from model.server.protocol import APIError, ChatMessage

MAX_FETCH_BYTES = 50 * 2 ** 20


@dataclass
class MediaPolicy:
    local_dir: Path | None = None
    domains: list[str] = field(default_factory=list)
    fetch_timeout_s: float = 10.0

    @classmethod
    def from_args(cls, local_dir: str | None, domains: list[str] | None) -> "MediaPolicy":
        folder = None
        if local_dir is not None:
            folder = Path(local_dir).expanduser().resolve()
            if not folder.is_dir():
                raise FileNotFoundError(f"--allowed-local-media-path {local_dir}: no such folder")
        return cls(folder, [d.lower() for d in domains or []])

    def read(self, url: str, where: str):
        """An image URL -> PIL image; APIError 400 for anything not allowed or not decodable."""
        try:
            if url.startswith("data:"):
                return load_image(url)
            parsed = urlparse(url)
            if parsed.scheme in ("http", "https"):
                host = (parsed.hostname or "").lower()
                if not any(host == d or host.endswith("." + d) for d in self.domains):
                    raise APIError(400, f"{where}: fetching images from {host or url!r} is not allowed (the server "
                                        "takes data: URLs, and http(s) only from --allowed-media-domains)", param=where)
                return load_image(self._fetch(url, where))
            if parsed.scheme in ("file", ""):
                if self.local_dir is None:
                    raise APIError(400, f"{where}: local files are not allowed (start the server with "
                                        "--allowed-local-media-path DIR)", param=where)
                path = Path(parsed.path if parsed.scheme == "file" else url).expanduser().resolve()
                if not path.is_relative_to(self.local_dir):
                    raise APIError(400, f"{where}: {path} is outside --allowed-local-media-path", param=where)
                return load_image(path)
            raise APIError(400, f"{where}: unsupported image URL scheme {parsed.scheme!r}", param=where)
        except ValueError as e:
            raise APIError(400, f"{where}: {e}", param=where) from None

    def _fetch(self, url: str, where: str) -> bytes:
        import httpx

        try:
            with httpx.stream("GET", url, timeout=self.fetch_timeout_s, follow_redirects=False) as r:
                if r.status_code != 200:
                    raise APIError(400, f"{where}: {url} answered HTTP {r.status_code}", param=where)
                data = b""
                for part in r.iter_bytes():
                    data += part
                    if len(data) > MAX_FETCH_BYTES:
                        raise APIError(400, f"{where}: {url} is larger than {MAX_FETCH_BYTES} bytes", param=where)
                return data
        except httpx.HTTPError as e:
            raise APIError(400, f"{where}: cannot fetch {url}: {e}", param=where) from None


def _arguments(raw: str | dict):
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def to_qwen_messages(messages: list[ChatMessage], media: MediaPolicy) -> list[dict]:
    out = []
    for n, m in enumerate(messages):
        role = "system" if m.role == "developer" else m.role
        if m.content is None or isinstance(m.content, str):
            msg: dict = {"role": role, "content": m.content or ""}
        else:
            parts = []
            for k, part in enumerate(m.content):
                where = f"messages.{n}.content.{k}"
                if part.type == "image_url":
                    if part.image_url is None:
                        raise APIError(400, f"{where}: an image_url part needs image_url.url", param=where)
                    parts.append({"type": "image", "image": media.read(part.image_url.url, where)})
                else:
                    parts.append({"type": "text", "text": part.text or ""})
            msg = {"role": role, "content": parts}
        if m.tool_calls:
            msg["tool_calls"] = [{"type": "function", "id": c.id,
                                  "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)}}
                                 for c in m.tool_calls]
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        out.append(msg)
    return out
