"""Tensor parallelism end to end on CPU (gloo, 2 ranks): `Qwen3VL.from_pretrained(path, tensor_parallel_size=2)`
starts its worker itself and gives the TP=1 logits (float32, within fp32 reduction-order rounding) and the same greedy tokens, for dense and MoE,
bf16 and FP8 checkpoints; torchrun and `qvl-agent generate --tp 2` too. Wrong setups end with one clear error and
no process left behind, also when a worker dies or the parent is killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agent.cli import main as cli_main
from model import Qwen3VL
from model.quant import Fp8Experts, Fp8Linear
from tiny_checkpoints import FP32_LOGIT_RTOL
from tiny_tokenizer import build_processor

REPO = Path(__file__).resolve().parents[2]
NEW_TOKENS = 32


def child_pids(pid: int | None = None) -> set[int]:
    """Live (non-zombie) processes whose parent is `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def image_prompt() -> dict:
    proc = build_processor()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 100, 3), dtype=np.uint8))
    chat = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
                                    add_generation_prompt=True, tokenize=False)
    return {k: v for k, v in proc(text=[chat], images=[image], return_tensors="pt").items() if k != "mm_token_type_ids"}


@pytest.fixture
def no_leftover_processes():
    before = child_pids()
    yield
    deadline = time.time() + 10
    while child_pids() - before and time.time() < deadline:
        time.sleep(0.1)
    assert child_pids() - before == set(), "worker processes were left running"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "dense_fp8", "moe", "moe_fp8"])
def test_tp2_equals_tp1(kind, fp8_models, no_leftover_processes, record_property):
    path = fp8_models[kind]
    inputs = image_prompt()
    one = Qwen3VL.from_pretrained(path, dtype=torch.float32)
    want_logits = one.logits(**inputs)
    want_tokens = one.generate(**inputs, max_new_tokens=NEW_TOKENS)
    assert len(set(want_tokens[0].tolist())) > NEW_TOKENS // 4

    two = Qwen3VL.from_pretrained(path, dtype=torch.float32, tensor_parallel_size=2)
    try:
        assert len(two.worker_pids) == 1 and all(alive(p) for p in two.worker_pids)
        attn = two.language_model.layers[0].self_attn
        assert attn.q_proj.weight.shape[0] == one.language_model.layers[0].self_attn.q_proj.weight.shape[0] // 2
        assert attn.num_kv_heads == 1 and attn.k_proj.weight.shape[0] == 128   # the single kv head, replicated
        mlp = two.language_model.layers[0].mlp
        if kind.startswith("moe"):
            assert mlp.local == range(0, 2) and mlp.experts.num_experts == 2      # expert parallel: 2 of 4 experts
            assert isinstance(mlp.experts, Fp8Experts) == kind.endswith("fp8")
        else:
            assert mlp.down_proj.weight.shape[1] == one.config.text.intermediate_size // 2
        assert isinstance(attn.o_proj, Fp8Linear) == kind.endswith("fp8")

        got = two.logits(**inputs)
        delta = (got - want_logits).abs().max().item()
        record_property(f"tp2_{kind}_max_abs_logit_delta", delta)
        print(f"\n[{kind}] TP=2 vs TP=1 fp32 logits max|Δ| = {delta:.2e} (|logits| max {want_logits.abs().max():.1f})")
        # TP changes only the fp32 summation order (row-parallel partial sums, oneDNN's K blocking of the shards)
        assert delta <= FP32_LOGIT_RTOL * want_logits.abs().max().item()
        streamed = []
        tokens = two.generate(**inputs, max_new_tokens=NEW_TOKENS, stream=lambda t: streamed.append(int(t[0])))
        assert torch.equal(tokens, want_tokens)
        assert streamed == tokens[0].tolist()   # the stream callback runs on rank 0 only, once per token
    finally:
        two.close()


def test_tp_size_that_does_not_divide_heads(fp8_models, no_leftover_processes):
    with pytest.raises(ValueError, match="num_attention_heads: 2 is not divisible by the tensor-parallel size 3"):
        Qwen3VL.from_pretrained(fp8_models["dense"], tensor_parallel_size=3)


def test_fp8_shape_that_cannot_be_split(fp8_unsplittable, no_leftover_processes):
    # intermediate 384 / TP 2 = 192 rows per rank: not whole 128-row FP8 blocks
    with pytest.raises(ValueError, match=r"model\.language_model\.layers\.0\.mlp\.gate_proj\.weight: cannot shard "
                                         r"rows 384 over tensor-parallel size 2 .*192 per rank"):
        Qwen3VL.from_pretrained(fp8_unsplittable, tensor_parallel_size=2)
    assert Qwen3VL.from_pretrained(fp8_unsplittable).language_model.layers[0].mlp.gate_proj.out_features == 384


def test_missing_shard(fp8_models, tmp_path, no_leftover_processes):
    src = fp8_models["dense_fp8"]
    assert (src / "model.safetensors.index.json").is_file()
    for f in src.iterdir():
        if f.is_file():
            os.symlink(f, tmp_path / f.name)
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing shard.*model-00002-of-00003.safetensors"):
        Qwen3VL.from_pretrained(tmp_path, tensor_parallel_size=2)


def test_torch_distributed_stays_usable_after_errors(fp8_models):
    """A refused setup leaves no process group behind (a later TP model can start)."""
    import torch.distributed as dist

    with pytest.raises(ValueError):
        Qwen3VL.from_pretrained(fp8_models["dense"], tensor_parallel_size=3)
    assert not dist.is_initialized()


@pytest.mark.slow
def test_a_dead_worker_gives_one_error_and_no_hang(fp8_models, no_leftover_processes):
    model = Qwen3VL.from_pretrained(fp8_models["dense"], dtype=torch.float32, tensor_parallel_size=2)
    (pid,) = model.worker_pids
    os.kill(pid, signal.SIGKILL)
    ids = torch.tensor([[151644, 872, 198, 72, 101]])
    t0 = time.time()
    with pytest.raises(RuntimeError, match="tensor-parallel worker rank 1 exited"):
        model.generate(ids, max_new_tokens=4)
    assert time.time() - t0 < 30
    with pytest.raises(RuntimeError, match="closed"):
        model.logits(ids)


PARENT = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, sys.argv[3])
    from model import Qwen3VL
    model = Qwen3VL.from_pretrained(sys.argv[1], dtype=torch.float32, tensor_parallel_size=2)
    print(model.worker_pids[0], flush=True)
    model.generate(torch.tensor([[151644, 872, 198]]), max_new_tokens=2)
    if sys.argv[2] == "hang":
        time.sleep(600)
    # "exit": leave without close(); the workers must still go
""")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "killed"])
def test_workers_die_with_their_parent(how, fp8_models, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(fp8_models["dense"]),
                               "exit" if how == "exit" else "hang", str(REPO)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        if how == "killed":
            time.sleep(1.0)
            parent.kill()
        parent.wait(timeout=120)
        deadline = time.time() + 15
        while alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(worker), f"worker {worker} outlived its parent ({how})"
        if how == "exit":
            assert parent.returncode == 0, parent.stderr.read()
    finally:
        parent.kill()
        parent.wait()


TORCHRUN = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, sys.argv[3])
    from model import Qwen3VL
    model = Qwen3VL.from_pretrained(sys.argv[1], dtype=torch.float32)     # world size from torchrun
    ids = torch.tensor([[151644, 872, 198, 72, 101, 108, 108, 111, 151645, 198, 151644, 77091, 198]])
    out = {"logits": model.logits(ids), "tokens": model.generate(ids, max_new_tokens=16),
           "q_rows": model.language_model.layers[0].self_attn.q_proj.weight.shape[0], "workers": model.worker_pids}
    model.close()                                                        # leaves the group it created
    out["left_group"] = not torch.distributed.is_initialized()
    torch.save(out, f"{sys.argv[2]}.rank{os.environ['RANK']}")
""")


@pytest.mark.slow
def test_under_torchrun(fp8_models, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(TORCHRUN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the same thread count as this process (torchrun would pick 1): float32 sums then split the same way
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--master-addr", "127.0.0.1", "--master-port", str(port), str(script),
                             str(fp8_models["moe_fp8"]), str(tmp_path / "out"), str(REPO)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    ranks = [torch.load(tmp_path / f"out.rank{r}") for r in range(2)]
    one = Qwen3VL.from_pretrained(fp8_models["moe_fp8"], dtype=torch.float32)
    ids = torch.tensor([[151644, 872, 198, 72, 101, 108, 108, 111, 151645, 198, 151644, 77091, 198]])
    want_logits, want_tokens = one.logits(ids), one.generate(ids, max_new_tokens=16)
    for r in ranks:
        assert r["workers"] == [] and r["q_rows"] == 128 and r["left_group"]
        assert (r["logits"] - want_logits).abs().max().item() <= FP32_LOGIT_RTOL * want_logits.abs().max().item()
        assert torch.equal(r["tokens"], want_tokens)


@pytest.mark.slow
def test_cli_generate_tp2(fp8_models, capsys, no_leftover_processes):
    args = ["generate", "--model", str(fp8_models["moe"]), "--prompt", "Hello there", "--max-new-tokens", "12",
            "--dtype", "float32", "--json", "--device", "cpu"]
    assert cli_main(args) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli_main(args + ["--tp", "2"]) == 0
    captured = capsys.readouterr()
    two = json.loads(captured.out.strip().splitlines()[-1])
    assert "tensor-parallel 2" in captured.err
    assert two["token_ids"] == one["token_ids"] and len(one["token_ids"]) == 12
    assert cli_main(args + ["--tp", "0"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --tp must be >= 1, got 0"


@pytest.mark.parametrize("kind", ["dense_fp8", "moe"])
def test_a_rank_reads_only_its_slices(kind, fp8_models, monkeypatch):
    """Rank 1 of 2 asks safetensors for row/column slices of the sharded tensors and for its experts only; the
    values equal the matching slices of the full checkpoint (loading needs no process group)."""
    from model.loader import CheckpointReader
    from model.parallel import TensorParallel

    calls: list[tuple[str, object]] = []
    original = CheckpointReader.get

    def recording_get(self, name, index=None):
        calls.append((name, index))
        return original(self, name, index)

    monkeypatch.setattr(CheckpointReader, "get", recording_get)
    shard = Qwen3VL.load_rank(fp8_models[kind], torch.float32, torch.device("cpu"), TensorParallel(1, 2))
    monkeypatch.undo()
    full = Qwen3VL.from_pretrained(fp8_models[kind], dtype=torch.float32)
    reads = dict(calls)
    prefix = "model.language_model.layers.0."
    assert reads[prefix + "self_attn.q_proj.weight"] == (slice(128, 256),)
    assert reads[prefix + "self_attn.o_proj.weight"] == (slice(None), slice(128, 256))
    assert reads[prefix + "self_attn.k_proj.weight"] == (slice(0, 128),)        # the one kv head, replicated
    ours, ref = shard.language_model.layers[0], full.language_model.layers[0]
    if kind == "dense_fp8":
        assert reads[prefix + "self_attn.q_proj.weight_scale_inv"] == (slice(1, 2),)
        assert reads[prefix + "mlp.down_proj.weight_scale_inv"] == (slice(None), slice(1, 2))
        assert torch.equal(ours.mlp.gate_proj.weight.view(torch.uint8), ref.mlp.gate_proj.weight[128:].view(torch.uint8))
        assert torch.equal(ours.mlp.down_proj.weight_scale_inv, ref.mlp.down_proj.weight_scale_inv[:, 1:])
    else:
        # fused experts on disk: only rows 2:4 (experts 2 and 3) are read
        assert reads[prefix + "mlp.experts.gate_up_proj"] == slice(2, 4)
        assert torch.equal(ours.mlp.experts.down_proj, ref.mlp.experts.down_proj[2:])
        assert torch.equal(ours.mlp.gate.weight, ref.mlp.gate.weight)             # the router is replicated
    assert torch.equal(ours.self_attn.q_proj.weight.float(), ref.self_attn.q_proj.weight[128:].float())
    assert not any(".mlp.experts." in n and i is None for n, i in calls)       # no whole expert tensor read
    assert torch.equal(ours.self_attn.o_proj.weight.float(), ref.self_attn.o_proj.weight[:, 128:].float())


def test_row_parallel_bias_is_added_once(tmp_path):
    """With attention biases, the ranks' o_proj partial outputs sum to the full layer's output: the o_proj bias
    lives on rank 0 only (zeros elsewhere), q/k/v biases are sliced with their rows."""
    import tiny_checkpoints
    from model.parallel import TensorParallel

    path = tiny_checkpoints.save_checkpoint(tmp_path / "bias", tied=True, text=dict(attention_bias=True))
    full = Qwen3VL.from_pretrained(path, dtype=torch.float32)
    ranks = [Qwen3VL.load_rank(path, torch.float32, torch.device("cpu"), TensorParallel(r, 2)) for r in range(2)]
    assert torch.equal(ranks[0].language_model.layers[1].self_attn.o_proj.bias,
                       full.language_model.layers[1].self_attn.o_proj.bias)
    assert not ranks[1].language_model.layers[1].self_attn.o_proj.bias.any()
    hd = full.config.text.head_dim
    x = torch.randn(1, 5, full.config.text.hidden_size, generator=torch.Generator().manual_seed(0))
    cos, sin = torch.ones(1, 5, hd), torch.zeros(1, 5, hd)
    for layer in range(full.config.text.num_hidden_layers):
        want = full.language_model.layers[layer].self_attn(x, cos, sin, None, layer, None)
        got = sum(r.language_model.layers[layer].self_attn(x, cos, sin, None, layer, None) for r in ranks)
        assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
        want = full.language_model.layers[layer].mlp(x)
        got = sum(r.language_model.layers[layer].mlp(x) for r in ranks)
        assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
