"""Tensor parallelism (vLLM's scheme, runtime spec §8): process group, weight sharding, all-reduce, and the worker
processes behind `Qwen3VL.from_pretrained(path, tensor_parallel_size=N)`.

Column-parallel linears (q/k/v, gate/up, expert gate/up) keep a slice of the output rows; row-parallel linears
(o_proj, down_proj, expert down) keep a slice of the input columns and all-reduce their outputs, so a decoder layer
needs exactly two all-reduces. FP8 weights are sharded together with their 128x128 scale grid, which requires every
sharded extent to be a multiple of 128 on each rank (vLLM's `validate_fp8_block_shape`); sizes that cannot be split
raise ValueError naming the tensor, the size and the TP degree (e.g. 30B-A3B experts I=768 at TP=4: 192 per rank,
use expert parallelism instead: `expert_range`).

Two ways to run N ranks:
* `from_pretrained(..., tensor_parallel_size=N)` in one ordinary process: that process is rank 0 and starts N-1
  worker processes (`WorkerPool`); every `logits()`/`generate()` call on rank 0 is sent to the workers, which run
  the same call in lockstep. Workers die with their parent (they watch its pid and their command socket), are
  terminated on any error and at exit, and collectives time out (QVL_TP_TIMEOUT_S, default 600 s).
* under `torchrun` (RANK/WORLD_SIZE set): every rank is a process of its own and runs the user's script.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor

from model.config import TextConfig
from model.quant import BLOCK


@dataclass(frozen=True)
class TensorParallel:
    """This process's place in the TP group (always the default process group); world_size 1 means no
    communication at all. No reference to the group object is kept: destroy_process_group() must be able to free
    it while the interpreter is alive (gloo's threads can abort the process when it is freed during interpreter exit)."""

    rank: int = 0
    world_size: int = 1

    def all_reduce(self, x: Tensor) -> Tensor:
        """Sum x over the group, in place (returns x)."""
        if self.world_size > 1:
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    def broadcast(self, x: Tensor, src: int = 0) -> Tensor:
        """Every rank gets rank `src`'s x, in place (returns x)."""
        if self.world_size > 1:
            dist.broadcast(x, src=src)
        return x


def collective_timeout_s() -> float:
    value = os.environ.get("QVL_TP_TIMEOUT_S", "600")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"QVL_TP_TIMEOUT_S={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"QVL_TP_TIMEOUT_S must be positive, got {value}")
    return seconds


def init_tensor_parallel(backend: str | None = None, rank: int | None = None, world_size: int | None = None,
                         init_method: str | None = None, device: torch.device | None = None) -> TensorParallel:
    """Join (or create) the default process group: NCCL when CUDA is available (or `device` is CUDA), else gloo.

    rank/world_size default to the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
    With a world size of 1 no process group is created. Collectives time out after collective_timeout_s().
    """
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of size {world_size}")
    if world_size == 1:
        return TensorParallel()
    if backend is None:
        cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
        backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        if init_method is None and "MASTER_ADDR" not in os.environ:
            raise ValueError("tensor parallelism needs MASTER_ADDR/MASTER_PORT (run under torchrun) or init_method")
        if backend == "nccl":
            if device is None:
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=collective_timeout_s()))
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
        raise ValueError(f"a process group (rank {dist.get_rank()} of {dist.get_world_size()}) already exists")
    return TensorParallel(rank, world_size)


def leave_process_group() -> None:
    """Destroy the default process group, if any (local: peers need not take part)."""
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a broken group (dead peer) cannot always be torn down cleanly; it is unused now
            pass


# ----------------------------------------------------------------------------------------------------------
# sharding


def split_size(size: int, world_size: int, what: str, block: int | None = None) -> int:
    """Per-rank extent of a dimension of `size` split `world_size` ways; ValueError when it does not split."""
    if size % world_size:
        raise ValueError(f"{what}: {size} is not divisible by the tensor-parallel size {world_size}")
    per_rank = size // world_size
    if block and world_size > 1 and per_rank % block:
        raise ValueError(f"{what}: {size} / TP {world_size} = {per_rank} per rank is not a multiple of the "
                         f"{block}-wide FP8 block; use a smaller TP degree or expert parallelism")
    return per_rank


def shard_rows(w: Tensor, rank: int, world_size: int, what: str, scale_inv: Tensor | None = None,
               block: tuple[int, int] = BLOCK) -> tuple[Tensor, Tensor | None]:
    """Column-parallel: rows [.., N, K] -> [.., N/tp, K] (and the scale grid's row blocks with them)."""
    n = w.shape[-2]
    per = split_size(n, world_size, what, block[0] if scale_inv is not None else None)
    shard = w[..., rank * per:(rank + 1) * per, :].contiguous()
    if scale_inv is None:
        return shard, None
    if world_size == 1:
        return shard, scale_inv
    b = per // block[0]
    return shard, scale_inv[..., rank * b:(rank + 1) * b, :].contiguous()


def shard_cols(w: Tensor, rank: int, world_size: int, what: str, scale_inv: Tensor | None = None,
               block: tuple[int, int] = BLOCK) -> tuple[Tensor, Tensor | None]:
    """Row-parallel: columns [.., N, K] -> [.., N, K/tp] (outputs must then be all-reduced)."""
    k = w.shape[-1]
    per = split_size(k, world_size, what, block[1] if scale_inv is not None else None)
    shard = w[..., rank * per:(rank + 1) * per].contiguous()
    if scale_inv is None:
        return shard, None
    if world_size == 1:
        return shard, scale_inv
    b = per // block[1]
    return shard, scale_inv[..., rank * b:(rank + 1) * b].contiguous()


def shard_merged_rows(parts: list[tuple[Tensor, Tensor | None]], rank: int, world_size: int, what: str,
                      block: tuple[int, int] = BLOCK) -> tuple[Tensor, Tensor | None]:
    """Several column-parallel weights fused into one GEMM (gate|up): each is split on its own, then concatenated."""
    shards = [shard_rows(w, rank, world_size, f"{what}[{i}]", s, block) for i, (w, s) in enumerate(parts)]
    weight = torch.cat([w for w, _ in shards], dim=-2)
    scales = [s for _, s in shards]
    return weight, (torch.cat(scales, dim=-2) if all(s is not None for s in scales) else None)


def kv_head_for_rank(rank: int, world_size: int, num_kv_heads: int) -> tuple[int, int]:
    """(first kv head, kv heads) held by `rank`; with fewer kv heads than ranks each rank holds one replica."""
    if num_kv_heads >= world_size:
        per = split_size(num_kv_heads, world_size, "num_key_value_heads")
        return rank * per, per
    if world_size % num_kv_heads:
        raise ValueError(f"num_key_value_heads {num_kv_heads} does not divide the tensor-parallel size {world_size}")
    return rank // (world_size // num_kv_heads), 1


def shard_qkv(q: tuple[Tensor, Tensor | None], k: tuple[Tensor, Tensor | None], v: tuple[Tensor, Tensor | None],
              num_heads: int, num_kv_heads: int, head_dim: int, rank: int, world_size: int,
              block: tuple[int, int] = BLOCK) -> dict[str, tuple[Tensor, Tensor | None]]:
    """q [nq*hd, H] split by heads; k/v [nkv*hd, H] split by kv heads, replicated when nkv < TP (vLLM QKVParallelLinear)."""
    split_size(num_heads, world_size, "num_attention_heads")
    out = {"q_proj": shard_rows(q[0], rank, world_size, "q_proj", q[1], block)}
    first, count = kv_head_for_rank(rank, world_size, num_kv_heads)
    for name, (w, s) in (("k_proj", k), ("v_proj", v)):
        rows = slice(first * head_dim, (first + count) * head_dim)
        if s is not None and (rows.start % block[0] or (rows.stop - rows.start) % block[0]):
            raise ValueError(f"{name}: kv heads {first}..{first + count - 1} (head_dim {head_dim}) do not align with "
                             f"the {block[0]}-row FP8 blocks")
        scale = None if s is None else s[rows.start // block[0]:rows.stop // block[0]].contiguous()
        out[name] = (w[rows].contiguous(), scale)
    return out


def shard_experts(gate_up: Tensor, down: Tensor, rank: int, world_size: int,
                  gate_up_scale_inv: Tensor | None = None, down_scale_inv: Tensor | None = None,
                  block: tuple[int, int] = BLOCK) -> dict[str, Tensor]:
    """TP mode for MoE: every expert keeps I/tp of its intermediate size.

    gate_up [E, 2I, H] (gate rows then up rows; FP8 scale grid likewise gate blocks then up blocks, as in
    model.quant.Fp8Experts), down [E, H, I] -> {"gate_up_proj": [E, 2I/tp, H], "down_proj": [E, H, I/tp], scales}.
    """
    i = down.shape[-1]
    gate, up = gate_up[:, :i], gate_up[:, i:]
    gs = us = None
    if gate_up_scale_inv is not None:
        gs, us = gate_up_scale_inv.chunk(2, dim=1)
    w13, s13 = shard_merged_rows([(gate, gs), (up, us)], rank, world_size, "experts.gate_up_proj", block)
    w2, s2 = shard_cols(down, rank, world_size, "experts.down_proj", down_scale_inv, block)
    out = {"gate_up_proj": w13, "down_proj": w2}
    if s13 is not None:
        out["gate_up_proj_scale_inv"] = s13
    if s2 is not None:
        out["down_proj_scale_inv"] = s2
    return out


def expert_range(num_experts: int, rank: int, world_size: int) -> range:
    """Expert parallelism: the whole experts held by `rank` (routing stays replicated, outputs all-reduced)."""
    per = split_size(num_experts, world_size, "num_experts")
    return range(rank * per, (rank + 1) * per)


# ----------------------------------------------------------------------------------------------------------
# which slice of a checkpoint tensor each rank reads (the loader reads only that slice from safetensors)


@dataclass(frozen=True)
class Shard:
    """Rows (dim 0, column-parallel) or columns (dim 1, row-parallel) start:stop of a checkpoint weight."""

    dim: int
    start: int
    stop: int

    def index(self) -> tuple[slice, ...]:
        return (slice(None),) * self.dim + (slice(self.start, self.stop),)

    def of_scale_grid(self, full: int, block: tuple[int, int], what: str, rank: int, world_size: int) -> "Shard":
        """The matching rows/columns of an FP8 weight's scale grid; ValueError when the slice cuts a block."""
        b = block[self.dim]
        if self.start % b or (self.stop % b and self.stop != full):
            per = self.stop - self.start
            raise ValueError(f"{what}: cannot shard {'rows' if self.dim == 0 else 'columns'} {full} over "
                             f"tensor-parallel size {world_size} on {b}-wide FP8 blocks (rank {rank} would hold "
                             f"{self.start}:{self.stop}, {per} per rank, not a multiple of {b}); use a smaller TP size")
        return Shard(self.dim, self.start // b, -(-self.stop // b))


_LAYER_PARAM = re.compile(r"^language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
                          r"\.(weight|bias)$")


def text_param_shard(name: str, cfg: TextConfig, rank: int, world_size: int) -> Shard | None:
    """Rank's slice of the runtime parameter `name` (checkpoint orientation [out, in]); None = whole tensor.

    A row-parallel bias (o_proj) is not sharded: rank 0 adds it, the loader gives the other ranks zeros."""
    m = _LAYER_PARAM.match(name)
    if world_size == 1 or m is None:
        return None
    proj, kind = m.group(1), m.group(2)
    hd = cfg.head_dim
    if proj == "self_attn.q_proj":
        per = split_size(cfg.num_attention_heads, world_size, "num_attention_heads") * hd
        return Shard(0, rank * per, (rank + 1) * per)
    if proj in ("self_attn.k_proj", "self_attn.v_proj"):
        first, count = kv_head_for_rank(rank, world_size, cfg.num_key_value_heads)
        return Shard(0, first * hd, (first + count) * hd)
    if proj == "self_attn.o_proj":
        per = split_size(cfg.num_attention_heads, world_size, "num_attention_heads") * hd
        return Shard(1, rank * per, (rank + 1) * per) if kind == "weight" else None
    per = split_size(cfg.intermediate_size, world_size, "intermediate_size")
    if proj == "mlp.down_proj":
        return Shard(1, rank * per, (rank + 1) * per) if kind == "weight" else None
    return Shard(0, rank * per, (rank + 1) * per)


def is_row_parallel_bias(name: str) -> bool:
    return name.endswith(("self_attn.o_proj.bias", "mlp.down_proj.bias")) and name.startswith("language_model.layers.")


# ----------------------------------------------------------------------------------------------------------
# worker processes (rank 0 in the caller's process drives ranks 1..N-1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(conn: Connection, message: Any) -> None:
    # plain pickle: torch's multiprocessing reductions would pass tensors as file descriptors, which this
    # socket between unrelated processes cannot carry
    conn.send_bytes(pickle.dumps(message))


def _recv(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())


def _cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(v) for v in value)
    return value


class WorkerPool:
    """Ranks 1..N-1 of a tensor-parallel model, each in a worker process started by rank 0."""

    def __init__(self, procs: list[subprocess.Popen], conns: list[Connection], logs: list[Path]):
        self.procs, self.conns, self.logs = procs, conns, logs
        self.closed = False
        self.owns_process_group = False

    @classmethod
    def start(cls, world_size: int, load: dict, connect_timeout_s: float = 120.0) -> "WorkerPool":
        """Start ranks 1..world_size-1 and send them `load` (the arguments of their Qwen3VL load)."""
        authkey = secrets.token_bytes(16)
        listener = Listener(family="AF_UNIX", authkey=authkey)
        procs, logs = [], []
        env = dict(os.environ, QVL_TP_AUTHKEY=authkey.hex(), QVL_TP_ADDRESS=listener.address,
                   QVL_TP_PARENT=str(os.getpid()))
        env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        pool = cls(procs, [], logs)
        try:
            for rank in range(1, world_size):
                log = Path(tempfile.mkstemp(prefix=f"qvl-tp-rank{rank}-", suffix=".log")[1])
                logs.append(log)
                with open(log, "wb") as out:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-c", "from model.parallel import worker_main; worker_main()", str(rank)],
                        env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=root))
            conns = pool._accept(listener, world_size - 1, connect_timeout_s)
            pool.conns = [conns[r] for r in range(1, world_size)]
            for conn in pool.conns:
                _send(conn, dict(load, world_size=world_size))
        except BaseException:
            pool.close()
            raise
        finally:
            listener.close()
        return pool

    def _accept(self, listener: Listener, n: int, timeout_s: float) -> dict[int, Connection]:
        accepted: dict[int, Connection] = {}
        failure: list[BaseException] = []

        def accept_all() -> None:
            try:
                while len(accepted) < n:
                    conn = listener.accept()
                    accepted[_recv(conn)] = conn
            except BaseException as e:  # the listener was closed: give up quietly
                failure.append(e)

        thread = threading.Thread(target=accept_all, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while thread.is_alive():
            thread.join(0.1)
            self._raise_if_dead()
            if time.monotonic() > deadline:
                raise RuntimeError(f"tensor-parallel workers did not start within {timeout_s:.0f} s")
        if len(accepted) < n:
            raise RuntimeError(f"tensor-parallel workers could not connect ({failure[0] if failure else 'unknown'})")
        return accepted

    def _raise_if_dead(self) -> None:
        for rank, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"tensor-parallel worker rank {rank} exited (code {code}){self._log_tail(rank)}")

    def _log_tail(self, rank: int) -> str:
        try:
            lines = self.logs[rank - 1].read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return (":\n  " + "\n  ".join(lines[-8:])) if lines else ""

    def _reply(self, rank: int, timeout_s: float) -> tuple[str, str | None]:
        """The next message of worker `rank`: ("ok"|"error", text); ("dead", why) or ("silent", None)."""
        conn, proc = self.conns[rank - 1], self.procs[rank - 1]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if conn.poll(0.1):
                    return tuple(_recv(conn))
            except (EOFError, OSError):
                pass
            if proc.poll() is not None:
                return "dead", f"tensor-parallel worker rank {rank} exited (code {proc.returncode}){self._log_tail(rank)}"
            if time.monotonic() > deadline:
                return "silent", None

    def wait(self, timeout_s: float, local_error: BaseException | None = None) -> None:
        """Collect every worker's outcome of the last command; on any failure stop all workers and raise."""
        problems = []
        for rank in range(1, len(self.procs) + 1):
            status, text = self._reply(rank, timeout_s)
            if status == "ok":
                continue
            if status == "error" and local_error is not None:
                continue  # the same call failed here too; rank 0's own exception says why
            problems.append(text if status != "silent" else f"tensor-parallel worker rank {rank} did not answer "
                                                             f"within {timeout_s:.0f} s")
            if status == "error":
                problems[-1] = f"tensor-parallel worker rank {rank} failed: {text}"
        if problems:
            self.close()
            raise RuntimeError("; ".join(problems) + " (the tensor-parallel model is closed; load it again)") \
                from local_error

    def run(self, method: str, kwargs: dict, local: Callable[[], Any]) -> Any:
        """Run `method(**kwargs)` on every worker and `local()` here, in lockstep; returns local()'s result."""
        if self.closed:
            raise RuntimeError("this tensor-parallel model was closed (a worker failed or close() was called); "
                               "load it again")
        self._raise_if_dead_and_close()
        message = ("call", method, _cpu(kwargs))
        for conn in self.conns:
            _send(conn, message)
        try:
            result = local()
        except Exception as e:
            # A worker that died makes rank 0's collective fail: report the worker. Otherwise every rank raised
            # the same error (inputs are identical); workers stuck in a collective are stopped.
            self.wait(timeout_s=10.0, local_error=e)
            raise
        except BaseException:  # KeyboardInterrupt & co: the workers are mid-call and cannot be resynchronised
            self.close()
            raise
        self.wait(timeout_s=collective_timeout_s())
        return result

    def _raise_if_dead_and_close(self) -> None:
        try:
            self._raise_if_dead()
        except RuntimeError as e:
            self.close()
            raise RuntimeError(f"{e} (the tensor-parallel model is closed; load it again)") from None

    def close(self) -> None:
        """Stop the workers (politely, then terminate, then kill) and leave the process group."""
        if self.closed:
            return
        self.closed = True
        for conn in self.conns:
            try:
                _send(conn, ("close",))
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self.conns:
            conn.close()
        for log in self.logs:
            log.unlink(missing_ok=True)
        if self.owns_process_group:
            leave_process_group()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


def _exit_when_orphaned(parent: int) -> None:
    # the worker must not outlive rank 0, whatever state it is in (idle, loading, inside a collective)
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def worker_main() -> None:
    """Entry point of a worker process: connect to rank 0, load this rank's shard, run commands until told to stop."""
    rank = int(sys.argv[1])
    threading.Thread(target=_exit_when_orphaned, args=(int(os.environ["QVL_TP_PARENT"]),), daemon=True).start()
    conn = Client(os.environ["QVL_TP_ADDRESS"], family="AF_UNIX", authkey=bytes.fromhex(os.environ["QVL_TP_AUTHKEY"]))
    _send(conn, rank)
    load = _recv(conn)
    try:
        from model.generate import Qwen3VL

        device = torch.device(load["devices"][rank])
        tp = init_tensor_parallel(rank=rank, world_size=load["world_size"], init_method=load["init_method"],
                                  device=device)
        model = Qwen3VL.load_rank(load["folder"], getattr(torch, load["dtype"]), device, tp,
                                  quantize=load.get("quantize"))
    except BaseException as e:
        _send(conn, ("error", str(e) if isinstance(e, (ValueError, FileNotFoundError)) else f"{type(e).__name__}: {e}"))
        sys.exit(1)
    _send(conn, ("ok", None))
    while True:
        try:
            message = _recv(conn)
        except (EOFError, OSError):
            break
        if message[0] == "close":
            break
        _, method, kwargs = message
        try:
            if ":" in method:  # "module:function", called with the model (the serving engine's steps, model/engine/)
                module, function = method.split(":")
                getattr(importlib.import_module(module), function)(model, **kwargs)
            else:
                getattr(model, method)(**kwargs)
            _send(conn, ("ok", None))
        except BaseException as e:
            _send(conn, ("error", f"{type(e).__name__}: {e}"))
    conn.close()
    # leave without tearing down gloo/NCCL: their threads can abort an orderly interpreter exit, and rank 0 has
    # stopped using the group by now
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)
