"""Joining torch.distributed through DeepSpeed: an existing process group (Ray Train), the launcher's
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), else a world of one through a file rendezvous."""

from __future__ import annotations

import atexit
import os
import socket
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(backend: str = "auto", accelerator: str = "auto") -> tuple[int, int, int]:
    """Join or start torch.distributed through DeepSpeed; returns (rank, world_size, local_rank).
    `accelerator` "cpu": DeepSpeed on the CPU over gloo even where CUDA is (a small model); "auto": CUDA
    when there is one. Decided once per process: DeepSpeed fixes its accelerator on first use."""
    import torch

    cuda = torch.cuda.is_available() and accelerator != "cpu"
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import torch.distributed as dist

    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    # DeepSpeed's CPU shared-memory allreduce is a C++ op JIT-compiled on first use (~100 s); gloo does it.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    alone = not dist.is_initialized() and "MASTER_ADDR" not in os.environ
    if alone and os.environ.get("WORLD_SIZE", "1") == "1":
        # A world of one meets through a file, not a port: a port picked free can be taken before the
        # store binds it (EADDRINUSE seen in CI).
        for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
            os.environ.setdefault(key, value)
        store = Path(tempfile.gettempdir()) / f"acml-rendezvous-{os.getpid()}-{time.time_ns()}"
        atexit.register(store.unlink, missing_ok=True)  # one small file per run, otherwise left in /tmp
        deepspeed.init_distributed(dist_backend=backend, init_method=f"file://{store}", rank=0, world_size=1,
                                   auto_mpi_discovery=False)  # fmt: skip
    else:
        if not dist.is_initialized():
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
        deepspeed.init_distributed(dist_backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size(), local_rank


def rank0_says(flag: bool, world: int, device: object) -> bool:
    """Rank 0's answer on every rank (one broadcast): for decisions every rank must take together, such as
    stopping at a wall-clock budget that each rank's clock would otherwise cross at a different step."""
    if world == 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())


def union_over_ranks(names: set[str], universe: list[str], world: int, device: object) -> list[str]:
    """The names of `universe` (the same list on every rank) that any rank holds, in `universe`'s order, on
    every rank (one all-reduce of a flag per name): e.g. the shards that some rank's loader skipped."""
    if world == 1:
        return [n for n in universe if n in names]
    import torch
    import torch.distributed as dist

    flags = torch.tensor([int(n in names) for n in universe], dtype=torch.int32, device=device)
    dist.all_reduce(flags)
    return [n for n, f in zip(universe, flags.tolist()) if f]
