"""`qvl-agent generate` and `qvl-agent bench` on tiny checkpoints, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_checkpoints
from agent.cli import main

from model import Qwen3VL


@pytest.fixture()
def image_file(tmp_path) -> Path:
    path = tmp_path / "screen.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


def run_cli(argv, capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_generate_json_gives_the_runtime_tokens_and_timings(tmp_path_factory, image_file, capsys):
    ckpt = tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory)
    rc, out, err = run_cli(["generate", "--model", str(ckpt), "--image", str(image_file), "--prompt",
                            "What is on the screen?", "--max-new-tokens", "6", "--dtype", "float32", "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    model = Qwen3VL.from_pretrained(ckpt, dtype=torch.float32)
    inputs = model.preprocessor([{"role": "user", "content": [{"type": "image", "image": Image.open(image_file)},
                                                              {"type": "text", "text": "What is on the screen?"}]}])
    assert result["token_ids"] == model.generate(**inputs, max_new_tokens=6)[0].tolist()
    assert result["prompt_tokens"] == inputs["input_ids"].shape[1]
    assert result["answer"] == model.preprocessor.decode(result["token_ids"])
    t = result["timings"]
    assert t["load_s"] > 0 and t["prefill_s"] > 0 and t["decode_tok_s"] > 0


def test_generate_streams_the_answer(tmp_path_factory, image_file, capsys):
    ckpt = tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory)
    rc, out, err = run_cli(["generate", "--model", str(ckpt), "--image", str(image_file), "--prompt", "Hi",
                            "--max-new-tokens", "5", "--dtype", "float32"], capsys)
    assert rc == 0, err
    rc, out_json, _ = run_cli(["generate", "--model", str(ckpt), "--image", str(image_file), "--prompt", "Hi",
                               "--max-new-tokens", "5", "--dtype", "float32", "--json"], capsys)
    assert out == json.loads(out_json)["answer"] + "\n"
    assert "prefill" in err and "tok/s" in err


@pytest.mark.parametrize("problem", ["missing folder", "corrupt safetensors", "not an image", "missing image"])
def test_generate_bad_input_is_one_error_line(problem, tmp_path, tmp_path_factory, image_file, capsys):
    model, image = str(tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory)), str(image_file)
    if problem == "missing folder":
        model = str(tmp_path / "no-such-model")
    elif problem == "corrupt safetensors":
        folder = tmp_path / "ckpt"
        folder.mkdir()
        for f in Path(model).iterdir():
            (folder / f.name).symlink_to(f)
        (folder / "model.safetensors").unlink()
        (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
        model = str(folder)
    elif problem == "not an image":
        image = str(tmp_path / "notes.png")
        Path(image).write_text("this is text, not a PNG")
    else:
        image = str(tmp_path / "nope.png")
    rc, out, err = run_cli(["generate", "--model", model, "--image", image, "--prompt", "hi"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    expected = {"missing folder": "no such model folder", "corrupt safetensors": "not a valid safetensors file",
                "not an image": "cannot read image", "missing image": "no such file"}[problem]
    assert expected in errors[0]


@pytest.mark.slow
def test_bench_reports_both_runtimes_and_ratios(capsys):
    rc, out, err = run_cli(["bench", "--prompt-tokens", "48", "--new-tokens", "16", "--repeats", "1",
                            "--image-grid", "4", "4", "--dtype", "float32", "--device", "cpu", "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert result["prompt_tokens"] == 48 and result["new_tokens"] == 16
    for side in ("ours", "transformers"):
        assert result[side]["prefill_s"] > 0 and result[side]["decode_tok_s"] > 0
    assert result["prefill_speedup"] == pytest.approx(result["transformers"]["prefill_s"] / result["ours"]["prefill_s"])
    assert result["decode_speedup"] > 0


def test_generate_quantize_int8_answers(tmp_path_factory, image_file, capsys):
    ckpt = tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory)
    rc, out, err = run_cli(["generate", "--model", str(ckpt), "--image", str(image_file), "--prompt", "Hi",
                            "--max-new-tokens", "4", "--quantize", "int8", "--json"], capsys)
    assert rc == 0, err
    assert len(json.loads(out)["token_ids"]) == 4 and "int8" in err
    rc, out, err = run_cli(["generate", "--model", str(ckpt), "--prompt", "Hi", "--quantize", "int8",
                            "--device", "cuda"], capsys)
    assert rc != 0 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_bench_compare_llama_cpp_without_llama_cpp_is_one_error_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None:
        pytest.skip("llama-cpp-python is installed here")
    monkeypatch.setenv("QVL_CACHE", str(tmp_path))      # no cached source build either
    rc, out, err = run_cli(["bench", "--compare", "llama.cpp"], capsys)
    assert rc != 0 and out == ""
    assert err.startswith("error: llama-cpp-python is not installed") and "--build-llama-cpp" in err
    assert len(err.strip().splitlines()) == 1
