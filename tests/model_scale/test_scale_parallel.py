"""Tensor-parallel primitives: FP8-aware sharding rules, and 2 gloo processes reproducing single-process results."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.parallel import (
    expert_range,
    init_tensor_parallel,
    kv_head_for_rank,
    shard_cols,
    shard_experts,
    shard_merged_rows,
    shard_qkv,
    shard_rows,
    split_size,
)
from model.quant import Fp8Experts, dequantize_fp8_block, fp8_linear, quantize_fp8_block

REPO = Path(__file__).resolve().parents[2]


def test_fp8_block_divisibility_rules_from_the_spec():
    # runtime spec §8.1: 30B-A3B experts I=768 split at TP=2 but not at TP=4/8; 4B MLP 9728 not at TP=8
    assert split_size(768, 2, "experts", block=128) == 384
    with pytest.raises(ValueError, match=r"experts: 768 / TP 4 = 192 per rank is not a multiple of the 128-wide FP8"):
        split_size(768, 4, "experts", block=128)
    with pytest.raises(ValueError, match="1216 per rank"):
        split_size(9728, 8, "mlp.gate_proj", block=128)
    assert split_size(768, 4, "experts") == 192  # unquantized weights have no block constraint
    with pytest.raises(ValueError, match="not divisible by the tensor-parallel size 3"):
        split_size(512, 3, "q_proj")
    assert split_size(100, 1, "anything", block=128) == 100  # TP=1: partial blocks are fine


def test_fp8_shards_equal_shards_of_the_dequantized_weight():
    w = torch.randn(512, 768)
    q, s = quantize_fp8_block(w)
    full = dequantize_fp8_block(q, s, torch.float32)
    for rank in range(2):
        rq, rs = shard_rows(q, rank, 2, "w", s)
        assert torch.equal(dequantize_fp8_block(rq, rs, torch.float32), full[rank * 256:(rank + 1) * 256])
        cq, cs = shard_cols(q, rank, 2, "w", s)
        assert torch.equal(dequantize_fp8_block(cq, cs, torch.float32), full[:, rank * 384:(rank + 1) * 384])
    with pytest.raises(ValueError, match="w: 768 / TP 4 = 192"):
        shard_cols(q, 0, 4, "w", s)


def test_expert_and_merged_shards_keep_gate_and_up_apart():
    e, h, i = 2, 256, 384  # I/2 = 192 per rank: fine unquantized, refused for FP8
    fp8 = Fp8Experts.from_float(torch.randn(e, 2 * i, h), torch.randn(e, h, i))
    gate = dequantize_fp8_block(fp8.gate_up_proj[:, :i], fp8.gate_up_proj_scale_inv[:, :3], torch.float32)
    with pytest.raises(ValueError, match=r"experts.gate_up_proj\[0\]: 384 / TP 2 = 192"):
        shard_experts(fp8.gate_up_proj, fp8.down_proj, 0, 2, fp8.gate_up_proj_scale_inv, fp8.down_proj_scale_inv)
    plain = torch.randn(e, 2 * i, h)
    part = shard_experts(plain, torch.randn(e, h, i), 1, 2)
    assert torch.equal(part["gate_up_proj"], torch.cat([plain[:, 192:384], plain[:, 384 + 192:]], 1))
    assert part["down_proj"].shape == (e, h, 192) and set(part) == {"gate_up_proj", "down_proj"}
    w, s = shard_merged_rows([(fp8.gate_up_proj[0, :i], fp8.gate_up_proj_scale_inv[0, :3])], 0, 1, "gate")
    assert torch.equal(dequantize_fp8_block(w, s, torch.float32), gate[0])


def test_kv_heads_are_replicated_when_fewer_than_ranks():
    assert [kv_head_for_rank(r, 8, 4) for r in range(8)] == [(0, 1), (0, 1), (1, 1), (1, 1), (2, 1), (2, 1), (3, 1), (3, 1)]
    assert [kv_head_for_rank(r, 2, 4) for r in range(2)] == [(0, 2), (2, 2)]
    with pytest.raises(ValueError, match="does not divide"):
        kv_head_for_rank(0, 6, 4)
    hd, nq, nkv = 128, 8, 2
    q, k, v = (quantize_fp8_block(torch.randn(n * hd, 256)) for n in (nq, nkv, nkv))
    shards = [shard_qkv(q, k, v, nq, nkv, hd, r, 4) for r in range(4)]
    assert [s["q_proj"][0].shape[0] for s in shards] == [2 * hd] * 4
    assert torch.equal(shards[1]["k_proj"][0].view(torch.uint8), k[0][:hd].view(torch.uint8))
    assert torch.equal(shards[2]["v_proj"][0].view(torch.uint8), v[0][hd:].view(torch.uint8))
    assert torch.equal(shards[3]["k_proj"][1], k[1][1:2])


def test_expert_range_and_world_of_one():
    assert [expert_range(128, r, 8) for r in (0, 7)] == [range(0, 16), range(112, 128)]
    tp = init_tensor_parallel(rank=0, world_size=1)
    x = torch.ones(3)
    assert tp.world_size == 1 and tp.all_reduce(x) is x and torch.equal(x, torch.ones(3))
    with pytest.raises(ValueError, match="outside a world of size 2"):
        init_tensor_parallel(rank=2, world_size=2)


WORKER = textwrap.dedent("""
    import sys, torch, torch.nn.functional as F
    sys.path.insert(0, sys.argv[2])
    from model.parallel import init_tensor_parallel, shard_merged_rows, shard_cols, shard_experts, expert_range
    from model.quant import quantize_fp8_block, fp8_linear, Fp8Experts

    tp = init_tensor_parallel(backend="gloo")
    torch.manual_seed(0)                      # every rank builds the same full weights, then keeps its shard
    H, I, E = 256, 512, 4
    x = torch.randn(10, H)
    (gq, gs), (uq, us), (dq, ds) = (quantize_fp8_block(torch.randn(*s) * 0.05) for s in ((I, H), (I, H), (H, I)))
    w13, s13 = shard_merged_rows([(gq, gs), (uq, us)], tp.rank, tp.world_size, "mlp.gate_up")
    w2, s2 = shard_cols(dq, tp.rank, tp.world_size, "mlp.down_proj", ds)
    g, u = fp8_linear(x, w13, s13).chunk(2, dim=-1)
    mlp = tp.all_reduce(fp8_linear(F.silu(g) * u, w2, s2))

    experts = Fp8Experts.from_float(torch.randn(E, 2 * I, H) * 0.05, torch.randn(E, H, I) * 0.05)
    counts = [3, 0, 5, 2]
    xs = torch.randn(sum(counts), H)
    part = shard_experts(experts.gate_up_proj, experts.down_proj, tp.rank, tp.world_size,
                         experts.gate_up_proj_scale_inv, experts.down_proj_scale_inv)
    local = Fp8Experts(E, H, I // tp.world_size)
    local.load_state_dict(part)
    moe_tp = tp.all_reduce(local(xs, counts))

    mine = expert_range(E, tp.rank, tp.world_size)   # expert parallelism: whole experts, zero rows elsewhere
    out = experts(xs, counts)
    owner = torch.repeat_interleave(torch.arange(E), torch.tensor(counts))
    moe_ep = tp.all_reduce(torch.where(((owner >= mine.start) & (owner < mine.stop))[:, None], out, 0.0))
    torch.save({"mlp": mlp, "moe_tp": moe_tp, "moe_ep": moe_ep}, sys.argv[1])
    import os; os._exit(0)   # gloo's threads can abort a normal interpreter exit ("terminate called ...")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_reproduce_the_single_process_result(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / f"rank{rank}.pt"), str(REPO)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    # the same computation in one process, on the full weights
    torch.manual_seed(0)
    H, I, E = 256, 512, 4
    x = torch.randn(10, H)
    (gq, gs), (uq, us), (dq, ds) = (quantize_fp8_block(torch.randn(*s) * 0.05) for s in ((I, H), (I, H), (H, I)))
    g, u = fp8_linear(x, torch.cat([gq, uq]), torch.cat([gs, us])).chunk(2, dim=-1)
    mlp = fp8_linear(F.silu(g) * u, dq, ds)
    experts = Fp8Experts.from_float(torch.randn(E, 2 * I, H) * 0.05, torch.randn(E, H, I) * 0.05)
    counts = [3, 0, 5, 2]
    moe = experts(torch.randn(sum(counts), H), counts)

    for r in results:
        for name, want in (("mlp", mlp), ("moe_tp", moe), ("moe_ep", moe)):
            assert r[name].shape == want.shape
            assert (r[name] - want).abs().max().item() <= 1e-5 * want.abs().max().item() + 1e-6, name
    assert torch.equal(results[0]["mlp"], results[1]["mlp"])  # all-reduce leaves every rank with the same sum
