"""An offline Qwen3-VL tokenizer and image processor for tests (no downloads).

Byte-level BPE without merges (one token per byte) whose special tokens sit at the real Qwen ids
151643..151668, so token ids in tests mean what they mean for the real checkpoints. The chat template
follows the structure of the Hub's Qwen3-VL Instruct template (system, tools, images, videos,
assistant tool calls, generation prompt). Recipe: shared/docs/qwen3vl-runtime.md §10.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken
from transformers import Qwen2Tokenizer, Qwen3VLProcessor
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>",
]
FIRST_SPECIAL_ID = 151643

CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}"
    "{% if messages[0].content is string %}{{ messages[0].content }}"
    "{% else %}{% for c in messages[0].content %}{% if c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}"
    "{{ '\\n\\n' }}{% endif %}"
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
    "</tool_call><|im_end|>\n"
    "{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' and tools and loop.first %}"
    "{% else %}"
    "<|im_start|>{{ m.role }}\n"
    "{% if m.content is string %}{{ m.content }}"
    "{% else %}{% for c in m.content %}"
    "{% if c.type == 'image' or c.type == 'image_url' or 'image' in c %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c.type == 'video' or 'video' in c %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in c %}{{ c.text }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3VLProcessor without the video processor, which needs torchvision (not installable here)."""

    @classmethod
    def get_attributes(cls):
        return ["image_processor", "tokenizer"]


def build_tokenizer() -> Qwen2Tokenizer:
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    vocab.update({f"<filler_{i}>": i for i in range(256, FIRST_SPECIAL_ID)})
    return qwen2_tokenizer(vocab, merges=[])


def qwen2_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Qwen2Tokenizer:
    """A Qwen2Tokenizer over `vocab` (ids < 151643) + the special/added tokens at their real ids + the template."""
    vocab = dict(vocab, **{t: FIRST_SPECIAL_ID + j for j, t in enumerate(SPECIALS)})
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.backend_tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIALS if t.startswith("<|")])
    tok.backend_tokenizer.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in SPECIALS if not t.startswith("<|")])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_processor(min_pixels: int = 4096, max_pixels: int = 65536) -> ImageOnlyQwen3VLProcessor:
    """Tiny pixel budget by default so test images give a handful of visual tokens."""
    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=16,
                                  temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    tok = build_tokenizer()
    return ImageOnlyQwen3VLProcessor(image_processor=ip, tokenizer=tok, chat_template=CHAT_TEMPLATE)


def save_processor(path: str | Path, **kwargs) -> ImageOnlyQwen3VLProcessor:
    """Write tokenizer, chat template and preprocessor config in the Hub's file layout."""
    proc = build_processor(**kwargs)
    proc.save_pretrained(str(path))
    proc.image_processor.save_pretrained(str(path))  # preprocessor_config.json, as on the Hub
    return proc
