"""Helpers of the engine/server tests: test pictures, and `qvl-agent serve`'s app on a free loopback port
(uvicorn in a thread of the test process)."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
from PIL import Image

from model.parallel import free_port


def picture(seed: int = 0, h: int = 70, w: int = 100) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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


