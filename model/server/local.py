"""The server in a thread of this process on a free loopback port: what `qvl-agent eval --agent embedded
--parallel N` gives its workers (one model for all of them), and what the tests serve."""

from __future__ import annotations

import threading
import time

from model.parallel import free_port


class LocalServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, start_timeout_s: float = 30.0):
        import uvicorn

        self.port = port or free_port()
        self.base_url = f"http://{host}:{self.port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    lifespan="off"))
        # uvicorn listens to signals only from the main thread: this one leaves Ctrl-C to the caller
        self.thread = threading.Thread(target=self.server.run, name="qvl-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the local server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_engine(engine, served_model_name: str, **settings) -> LocalServer:
    """`engine` behind the OpenAI-compatible API (ServerSettings fields as keywords; constraint_factory too)."""
    from model.server.app import ServerSettings, build_app

    factory = {"constraint_factory": settings.pop("constraint_factory")} if "constraint_factory" in settings else {}
    return LocalServer(build_app(engine, ServerSettings(served_model_name, **settings), **factory))
