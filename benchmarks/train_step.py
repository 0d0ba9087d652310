"""Training-step throughput, measured in one run (ratios are what to compare; absolute rates drift).

    python benchmarks/train_step.py [--quick] [--emb-dim 64] [--batch 128] [--bf16]

1. bare GIN: forward + backward + AdamW step of the GIN alone (torch, no DeepSpeed);
2. full ACML step: GIN + heads for 2 teachers (768-d SMILES, 2048-d fingerprint) + contrastive loss, on
   the DeepSpeed engine (world size 1);
3. the same full step on 2 gloo ranks (negatives gathered across ranks), global batch 2 x batch;
4. with `--bf16`: the full step of 2 in bf16 (`trainer.precision=bf16`), timed interleaved with 1 and 2.
Every process uses 1 torch thread so 1 rank vs 2 ranks compares equal cores per rank.
Ends with one JSON line: molecules/s of each, `acml_step_vs_bare_gin` (2/1), `scaling_2_ranks` (3/2),
with `--bf16` also `acml_step_bf16_mol_s` and `bf16_vs_fp32` (4/2).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import socket
import sys
import time
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("ACML_LOG_LEVEL", "WARNING")
TEACHERS = {"rxnfp": 768, "morgan": 2048}


def moses_graphs(n: int, schema: str = "hu") -> list:
    from acml_dist.chem.featurize import smiles_to_graph
    from acml_dist.data.loader import graph_from_npz

    path = Path(importlib.util.find_spec("moses").submodule_search_locations[0]) / "dataset/data/test.csv.gz"
    with gzip.open(path, "rt") as fh:
        smiles = fh.read().splitlines()[1 : n + 1]
    return [graph_from_npz(smiles_to_graph(s), schema) for s in smiles]


def batches(graphs: list, batch: int, count: int, offset: int = 0) -> list:
    import torch
    from torch_geometric.data import Batch

    out = []
    for i in range(count):
        start = (offset + i * batch) % (len(graphs) - batch)
        gen = torch.Generator().manual_seed(i)
        emb = {n: torch.randn(batch, d, generator=gen) for n, d in TEACHERS.items()}
        out.append((Batch.from_data_list(graphs[start : start + batch]), emb))
    return out


def model_cfg(emb_dim: int) -> dict:
    return {"schema": "hu", "num_layers": 5, "emb_dim": emb_dim, "proj_dim": 128 if emb_dim <= 64 else 512}


def timed(step, data: list, warmup: int) -> float:
    for graph, emb in data[:warmup]:
        step(graph, emb)
    start = time.perf_counter()
    n = 0
    for graph, emb in data[warmup:]:
        step(graph, emb)
        n += graph.num_graphs
    return n / (time.perf_counter() - start)


def interleaved(steps: dict, data: list, warmup: int, rounds: int) -> dict[str, float]:
    """molecules/s of each step function, timed in alternating rounds so that load from other processes on
    the machine hits every contender alike (the ratio is what counts)."""
    for step in steps.values():
        for graph, emb in data[:warmup]:
            step(graph, emb)
    seconds = dict.fromkeys(steps, 0.0)
    molecules = 0
    for r in range(rounds):
        graph, emb = data[warmup + r % (len(data) - warmup)]
        molecules += graph.num_graphs
        for name, step in steps.items():
            start = time.perf_counter()
            step(graph, emb)
            seconds[name] += time.perf_counter() - start
    return {name: molecules / sec for name, sec in seconds.items()}


def bare_gin_step(emb_dim: int):
    import torch

    from acml_dist.models import GIN

    torch.manual_seed(0)
    gin = GIN(num_layers=5, emb_dim=emb_dim)
    opt = torch.optim.AdamW(gin.parameters(), lr=1e-3, weight_decay=1e-3)

    def step(graph, emb):
        opt.zero_grad()
        gin(graph).square().mean().backward()  # a scalar of the output: the GIN's own cost only
        opt.step()

    return step


def acml_step(data: list, emb_dim: int, warmup: int) -> float:
    return timed(acml_step_fn(data[0][0].num_graphs, emb_dim), data, warmup)


def acml_step_fn(batch: int, emb_dim: int, precision: str = "fp32"):
    """The training step of acml_dist.train (DeepSpeed engine, heads, loss, gather) on the current world;
    teacher inputs in the engine's dtype, as the trainer does."""
    from omegaconf import OmegaConf

    from acml_dist.config.train import TrainerConfig
    from acml_dist.losses import ContrastiveLoss
    from acml_dist.models import ACMLModel
    from acml_dist.training.distributed import init_distributed
    from acml_dist.training.ds_config import build_ds_config, initialize_engine

    init_distributed("gloo")
    import torch

    torch.manual_seed(0)
    model = ACMLModel(model_cfg(emb_dim), TEACHERS)
    trainer = OmegaConf.structured(TrainerConfig(micro_batch=batch, warmup_steps=1, precision=precision))
    engine, _ = initialize_engine(model, build_ds_config(trainer, 100, False), 1e-3)
    loss_fn = ContrastiveLoss("clip")
    dtype = next(engine.module.parameters()).dtype

    def step(graph, emb):
        out = engine(graph, {n: e.to(dtype) for n, e in emb.items()})
        total = sum(loss_fn(g, t, None, s) for g, t, s in out.values())
        engine.backward(total)
        engine.step()

    return step


def _rank(rank: int, port: int, emb_dim: int, batch: int, count: int, warmup: int, out: str) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    data = batches(moses_graphs(batch * 8), batch, count, offset=rank * batch)
    rate = acml_step(data, emb_dim, warmup)
    import torch.distributed as dist

    total = torch.tensor([rate])
    dist.all_reduce(total)  # molecules/s of the whole job = sum over ranks
    if rank == 0:
        Path(out).write_text(json.dumps({"rate": float(total)}))
    dist.barrier()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--emb-dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--bf16", action="store_true", help="also the full step in bf16 (vs fp32)")
    args = parser.parse_args()
    import torch
    import torch.multiprocessing as mp

    torch.set_num_threads(1)
    count, warmup = (40, 3) if args.quick else (120, 5)
    data = batches(moses_graphs(args.batch * 8), args.batch, count)
    # Ranks are separate processes: measure them before this process joins a process group itself.
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"train_step_{os.getpid()}.json"
    mp.spawn(_rank, args=(free_port(), args.emb_dim, args.batch, count, warmup, str(out)), nprocs=2)
    two = json.loads(out.read_text())["rate"]
    out.unlink()
    steps = {"bare": bare_gin_step(args.emb_dim), "acml": acml_step_fn(args.batch, args.emb_dim)}
    if args.bf16:
        steps["bf16"] = acml_step_fn(args.batch, args.emb_dim, "bf16")
    rates = interleaved(steps, data, warmup, count)
    bare, full = rates["bare"], rates["acml"]
    result = {
        "emb_dim": args.emb_dim,
        "batch_per_rank": args.batch,
        "bare_gin_mol_s": round(bare, 1),
        "acml_step_mol_s": round(full, 1),
        "acml_step_2_ranks_mol_s": round(two, 1),
        "acml_step_vs_bare_gin": round(full / bare, 3),
        "scaling_2_ranks": round(two / full, 3),
    }
    if args.bf16:
        result["acml_step_bf16_mol_s"] = round(rates["bf16"], 1)
        result["bf16_vs_fp32"] = round(rates["bf16"] / full, 3)
    print(
        f"bare GIN {bare:.0f} mol/s | ACML step {full:.0f} mol/s | 2 ranks {two:.0f} mol/s", file=sys.stderr
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
