"""Embedded Qwen3-VL runtime: `from model import Qwen3VL`.

Submodules: config (config.json), vision (ViT + mergers), text (decoder + KV cache), rope (MRoPE and 3-D
positions), loader (checkpoint files), generate (Qwen3VL, sampling), preprocess, moe, quant, cli.
The top-level name is imported lazily so `import model.preprocess` does not load the whole runtime.
"""

__all__ = ["Qwen3VL"]


def __getattr__(name: str):
    if name == "Qwen3VL":
        from model.generate import Qwen3VL

        return Qwen3VL
    raise AttributeError(f"module 'model' has no attribute {name!r}")
