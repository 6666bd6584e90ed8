"""Loading checkpoints: local folders, Hub ids from the local HF cache, tied/untied heads, and the clear
errors for bad input (missing folder, corrupt safetensors, Qwen2.5-VL config, missing shard)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tiny_checkpoints

from model import Qwen3VL
from model.cpu import PackedLinear
from model.config import Qwen3VLConfig


def linked_copy(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder whose files are symlinks to `src` (cheap to make, safe to edit per file)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in skip:
            (dst / f.name).symlink_to(f)
    return dst


def replace_file(folder: Path, name: str, content: bytes | str) -> None:
    (folder / name).unlink()
    data = content.encode() if isinstance(content, str) else content
    (folder / name).write_bytes(data)


def test_tied_checkpoint_has_one_embedding_matrix(tmp_path_factory):
    """The checkpoint stores one matrix for both; on CPU the head is a oneDNN-packed copy of it (model/cpu.py),
    elsewhere the very same parameter."""
    tied = Qwen3VL.from_pretrained(tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory), dtype=torch.float32)
    if isinstance(tied.lm_head, PackedLinear):
        assert torch.equal(tied.lm_head.weight, tied.language_model.embed_tokens.weight)
    else:
        assert tied.lm_head.weight is tied.language_model.embed_tokens.weight
    untied = Qwen3VL.from_pretrained(tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory),
                                     dtype=torch.float32)
    assert untied.lm_head.weight.data_ptr() != untied.language_model.embed_tokens.weight.data_ptr()
    assert not torch.equal(untied.lm_head.weight, untied.language_model.embed_tokens.weight)


def test_config_is_read_from_the_checkpoint(tmp_path_factory):
    m = Qwen3VL.from_pretrained(tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory), dtype=torch.bfloat16)
    c = m.config
    assert (c.text.hidden_size, c.text.num_hidden_layers, c.text.head_dim) == (64, 3, 16)
    assert c.text.mrope_section == (3, 3, 2) and c.vision.deepstack_visual_indexes == (0, 1)
    assert c.eos_token_ids == (151645, 151643) and c.pad_token_id == 151643   # generation_config.json
    assert m.dtype == torch.bfloat16 and len(m.language_model.layers) == 3 and len(m.visual.blocks) == 3
    assert all(isinstance(getattr(m.language_model.layers[0].self_attn, p), (torch.nn.Linear, PackedLinear))
               for p in ("q_proj", "k_proj", "v_proj", "o_proj"))


def test_hub_style_rope_scaling_config_is_understood():
    """Hub config.json files of the original release spell rotary settings as rope_scaling + rope_theta."""
    raw = {"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
           "text_config": {"vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 28,
                           "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 6144,
                           "head_dim": 128, "rope_theta": 5000000,
                           "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                                            "mrope_interleaved": True}},
           "vision_config": {"depth": 24, "hidden_size": 1024, "num_heads": 16, "intermediate_size": 4096,
                             "out_hidden_size": 2048, "deepstack_visual_indexes": [5, 11, 17]},
           "tie_word_embeddings": True}
    c = Qwen3VLConfig.from_dict(raw)
    assert c.text.rope_theta == 5e6 and c.text.mrope_section == (24, 20, 20) and c.tie_word_embeddings
    assert c.vision.head_dim == 64 and c.vision.patch_dim == 1536 and not c.is_moe


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        Qwen3VL.from_pretrained(tmp_path / "does-not-exist")


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Qwen3VL.from_pretrained(tmp_path)


def test_corrupt_safetensors_is_a_clear_error(tmp_path, tmp_path_factory):
    folder = linked_copy(tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory), tmp_path / "ckpt")
    replace_file(folder, "model.safetensors", b"\x00\x01garbage, not a safetensors header" * 10)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a valid safetensors file"):
        Qwen3VL.from_pretrained(folder)


def test_truncated_safetensors_is_a_clear_error(tmp_path, tmp_path_factory):
    src = tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory)
    folder = linked_copy(src, tmp_path / "ckpt")
    data = (src / "model.safetensors").read_bytes()
    replace_file(folder, "model.safetensors", data[: len(data) // 2])
    with pytest.raises(ValueError, match="safetensors"):
        Qwen3VL.from_pretrained(folder)


def test_qwen25_vl_checkpoint_is_refused_naming_what_was_found(tmp_path, tmp_path_factory):
    folder = linked_copy(tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory), tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["Qwen2_5_VLForConditionalGeneration"], model_type="qwen2_5_vl")
    replace_file(folder, "config.json", json.dumps(config))
    with pytest.raises(ValueError, match="Qwen2_5_VLForConditionalGeneration.*qwen2_5_vl.*Qwen3-VL"):
        Qwen3VL.from_pretrained(folder)


def test_missing_shard_is_named(tmp_path, tmp_path_factory):
    src = tiny_checkpoints.checkpoint("dense_sharded", tmp_path_factory)
    shards = sorted(f.name for f in src.glob("model-*.safetensors"))
    assert len(shards) >= 2
    folder = linked_copy(src, tmp_path / "ckpt", skip=(shards[1],))
    with pytest.raises(FileNotFoundError, match=f"missing shard.*{shards[1]}"):
        Qwen3VL.from_pretrained(folder)


def test_checkpoint_missing_tensors_for_the_config(tmp_path, tmp_path_factory):
    folder = linked_copy(tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory), tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 4
    replace_file(folder, "config.json", json.dumps(config))
    with pytest.raises(ValueError, match=r"missing .*language_model\.layers\.3\."):
        Qwen3VL.from_pretrained(folder)


def test_untied_checkpoint_without_lm_head_is_refused(tmp_path, tmp_path_factory):
    from safetensors.torch import load_file, save_file

    src = tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory)
    folder = linked_copy(src, tmp_path / "ckpt", skip=("model.safetensors",))
    tensors = load_file(str(src / "model.safetensors"))
    del tensors["lm_head.weight"]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing 1 tensor.*lm_head\.weight"):
        Qwen3VL.from_pretrained(folder)


def test_tensor_shape_that_disagrees_with_the_config_is_refused(tmp_path, tmp_path_factory):
    folder = linked_copy(tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory), tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 256
    replace_file(folder, "config.json", json.dumps(config))
    with pytest.raises(ValueError, match=r"mlp\.down_proj\.weight has shape \(64, 128\), expected \(64, 256\)"):
        Qwen3VL.from_pretrained(folder)


def make_hub_cache(cache: Path, repo_id: str, files_from: Path) -> None:
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    linked_copy(files_from, repo / "snapshots" / commit)


def test_hub_id_resolves_through_the_local_cache(tmp_path, tmp_path_factory, monkeypatch):
    import huggingface_hub.constants

    src = tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory)
    make_hub_cache(tmp_path / "hub", "tiny-org/tiny-qwen3-vl", src)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from_hub = Qwen3VL.from_pretrained("tiny-org/tiny-qwen3-vl", dtype=torch.float32)
    from_folder = Qwen3VL.from_pretrained(src, dtype=torch.float32)
    ids = torch.tensor([[151644, 872, 198, 100, 101, 102]])
    assert torch.equal(from_hub.logits(ids), from_folder.logits(ids))
    inputs = from_hub.preprocessor([{"role": "user", "content": "Hi there"}])   # tokenizer from the snapshot
    assert from_hub.preprocessor.decode(inputs["input_ids"]) == "user\nHi there\nassistant\n"


def test_hub_id_not_in_cache_says_how_to_get_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache.*qvl-agent download "
                                                "Qwen/Qwen3-VL-2B-Instruct"):
        Qwen3VL.from_pretrained("Qwen/Qwen3-VL-2B-Instruct")
