"""Helpers of the engine/server tests: test pictures, and `qvl-agent serve`'s app on a free loopback port."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from model.server.local import serve_engine


def picture(seed: int = 0, h: int = 70, w: int = 100) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def serve(engine, **settings):
    """The engine behind the OpenAI API on a free loopback port, model name "tiny" unless given."""
    return serve_engine(engine, settings.pop("served_model_name", "tiny"), **settings)
