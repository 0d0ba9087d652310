"""Rank probe run by tests/integration/test_cluster_multinode.py under cluster/multinode_local.sh (in
place of acml_dist/train.py): joins the job the two launchers form, computes the project's contrastive
loss with negatives gathered across ranks, and prints one JSON line per rank."""

from __future__ import annotations

import json
import os
import sys

import deepspeed
import torch
import torch.distributed as dist

from acml_dist.losses import ContrastiveLoss


def main() -> None:
    # As acml_dist/train.py does: no JIT build of DeepSpeed's CPU shared-memory op (~100 s); gloo reduces.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if f"fail_rank={rank}" in sys.argv[1:]:
        # A node that dies mid-job: its peer blocks in the next collective until the launcher stops it.
        print(f"PROBE rank {rank} failing on purpose", flush=True)
        sys.exit(3)
    micro = 4
    # Every rank draws the same global batch and keeps its own rows, so the single-process loss over the
    # whole global batch is the reference the distributed loss must equal.
    gen = torch.Generator().manual_seed(0)
    g_all, t_all = torch.randn(world * micro, 8, generator=gen), torch.randn(world * micro, 8, generator=gen)
    rows = slice(rank * micro, (rank + 1) * micro)
    scale = torch.tensor(10.0)
    g = g_all[rows].clone().requires_grad_(True)
    gathered = ContrastiveLoss("clip", gather=True)(g, t_all[rows], None, scale)
    local = ContrastiveLoss("clip", gather=False)(g_all[rows], t_all[rows], None, scale)
    reference = ContrastiveLoss("clip", gather=False)(g_all, t_all, None, scale)
    gathered.backward()  # gradients flow back through the all-gather from the other node
    mean = gathered.detach().clone()
    dist.all_reduce(mean)
    mean /= world
    record = {
        "rank": rank,
        "world_size": world,
        "node_rank": int(os.environ.get("CROSS_RANK", -1)),
        "micro_batch": micro,
        "loss_gathered_mean": float(mean),
        "loss_local": float(local),
        "loss_global_reference": float(reference),
        "grad_finite": bool(torch.isfinite(g.grad).all()),
        "argv": sys.argv[1:],
    }
    print("PROBE " + json.dumps(record), flush=True)
    dist.barrier()  # then leave without tearing the process group down (see the end of this file)


if __name__ == "__main__":
    main()
    # As acml_dist/train.py: skip C++ static destructors, where gloo's threads can abort a finished rank.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
