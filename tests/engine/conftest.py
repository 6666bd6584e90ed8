"""Engine and server fixtures on the tiny float32 checkpoints: one model and one engine per session, and an
in-process `qvl-agent serve` app on a free loopback port (uvicorn in a thread)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_checkpoints
from model import Qwen3VL
from model.engine import Engine, EngineConfig
from model.parallel import free_port


def picture(seed: int = 0, h: int = 70, w: int = 100) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def dense_path(tmp_path_factory):
    return tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory)


@pytest.fixture(scope="session")
def dense_model(dense_path) -> Qwen3VL:
    return Qwen3VL.from_pretrained(dense_path, dtype=torch.float32)


@pytest.fixture(scope="session")
def engine(dense_model):
    eng = Engine(dense_model, EngineConfig(max_num_seqs=32, max_num_batched_tokens=512, kv_cache_memory="256MiB",
                                           max_model_len=16384))
    yield eng
    eng.close()


class LiveServer:
    def __init__(self, app, port: int):
        import uvicorn

        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve(engine, **settings) -> LiveServer:
    from model.server.app import ServerSettings, build_app

    constraint_factory = settings.pop("constraint_factory", None)
    kwargs = {} if constraint_factory is None else {"constraint_factory": constraint_factory}
    app = build_app(engine, ServerSettings(settings.pop("served_model_name", "tiny"), **settings), **kwargs)
    return LiveServer(app, free_port())


@pytest.fixture(scope="session")
def server(engine):
    live = serve(engine)
    yield live
    live.stop()
