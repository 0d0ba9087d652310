"""The training loop every teacher trained here shares (`image_pretrain`, `nmr_pretrain`): a modality's input
paired row by row with a frozen SMILES teacher's embeddings, a train / held-out split, AdamW over shuffled
batches on DeepSpeed's data-parallel ranks (one process, or `deepspeed --num_gpus N ...`), and held-out R@1
of the trained model beside its untrained twin.

What differs per modality stays in its module: the model, how a batch becomes a loss (augmentation, autocast,
the loss itself) and how R@1 is counted (its pools)."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np

from acml_dist.training.distributed import init_distributed, rank0_says
from acml_dist.training.ds_config import build_ds_config, initialize_engine


@dataclass
class FitOptions:
    """How a teacher is fitted, whatever its modality: the loop's settings (`fit_pairs`), the held-out split
    (`val_fraction`) and its R@1 pool, torch's CPU threads, the device and the ZeRO stage."""

    epochs: int = 30
    batch_size: int = 128  # per rank
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    pool: int = 1000
    seed: int = 0
    threads: Optional[int] = None
    device: str = "auto"  # auto | cpu | cuda
    zero_stage: int = 0
    on_epoch: Optional[Callable[[int, float], None]] = None  # (epoch, mean loss over ranks) after each


def paired_embeddings(
    root: Any, teacher: str, have: Container[str], splits: Sequence[str] = ("train", "val", "test")
) -> tuple[list[str], np.ndarray]:
    """(keys, the teacher's cached embeddings float32 (N, D)) of the dataset's molecules, split by split in
    shard order, whose key is in `have` (the molecules with the modality's input) and that have one."""
    from acml_dist.data.loader import iter_samples
    from acml_dist.data.shards import read_manifest

    present = (read_manifest(root) or {}).get("splits", {})
    keys, ys = [], []
    for split in (s for s in splits if s in present):
        for s in iter_samples(root, split, teachers=[teacher]):
            emb = s["embeddings"].get(teacher)
            if emb is not None and s["key"] in have:
                keys.append(s["key"])
                ys.append(emb)
    return keys, np.stack(ys).astype(np.float32) if ys else np.zeros((0, 0), np.float32)


def formula_groups(root: Any, keys: Sequence[str]) -> np.ndarray:
    """Per key, an integer shared by the keys whose molecules have the same molecular formula (isomers), from
    the dataset's `meta.formula`; for `fit_pairs(groups=...)`. KeyError names a key the dataset lacks."""
    from acml_dist.data.modalities import iter_dataset_molecules

    wanted, formula = set(keys), {}
    for m in iter_dataset_molecules(root, ("train", "val", "test")):
        if m["key"] in wanted:
            formula[m["key"]] = m["formula"] or m["key"]  # no formula: a group of its own
    missing = wanted - formula.keys()
    if missing:
        raise KeyError(f"{len(missing)} keys are not in {root}, e.g. {sorted(missing)[0]}")
    _, groups = np.unique([formula[k] for k in keys], return_inverse=True)
    return groups.reshape(-1)


def split_pairs(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of `n` pairs: a seeded permutation, the first round(n x val_fraction)
    held out; ValueError when fewer than 2 are left to train on."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if n - n_val < 2:
        raise ValueError(f"{n} pairs leave fewer than 2 to train on")
    return perm[n_val:], perm[:n_val]


def start_fit(fit: FitOptions, n: int) -> tuple[int, Any, np.ndarray, np.ndarray]:
    """Before building a model: torch's threads, the rank's world (`join`), the same seed on every rank (the
    same initial weights) and the split of the `n` pairs. Returns (rank, device, train rows, held-out
    rows)."""
    import torch

    if fit.threads:
        torch.set_num_threads(int(fit.threads))
    rank, _, dev = join(fit.device)
    torch.manual_seed(fit.seed)
    train, val = split_pairs(n, fit.val_fraction, fit.seed)
    return rank, dev, train, val


def join(device: str = "auto") -> tuple[int, int, Any]:
    """(rank, world size, the torch device this rank trains on): joins torch.distributed through DeepSpeed
    (`init_distributed`: a world of one when launched plainly, the launcher's ranks under `deepspeed`).
    `device` "cpu" keeps DeepSpeed on the CPU where CUDA is; "auto" / "cuda": the rank's GPU when there is
    one. Joining again returns the same world."""
    import torch
    from deepspeed.accelerator import get_accelerator

    rank, world, local_rank = init_distributed(accelerator="cpu" if device == "cpu" else "auto")
    return rank, world, torch.device(get_accelerator().device_name(local_rank))


def fit_pairs(
    model: Any,
    n: int,
    batch_loss: Callable[[Any, Any], Any],
    fit: FitOptions,
    *,
    one_cycle: bool = False,
    stop: Optional[Callable[[], bool]] = None,
    groups: Optional[np.ndarray] = None,
) -> tuple[list[float], int, bool]:
    """Data-parallel DeepSpeed training over the ranks `join` finds: every epoch one seeded shuffle of the
    `n` training rows (the same on every rank), cut into global batches of `fit.batch_size` rows per rank;
    rank r takes the r-th slice of each. Every rank runs the same number of steps: rows past the last whole
    global batch wait for the next epoch's shuffle (fewer than 2 rows per rank: ValueError). AdamW (no decay
    on biases and scalars, as the ACML trainer: `ds_config.param_groups`), a constant rate or (`one_cycle`)
    warm-up over 15% of the steps and cosine decay; fp32 weights (a batch loss may autocast), ZeRO stage
    `fit.zero_stage`, on `join(fit.device)`'s device (the engine moves the model there).

    `batch_loss(rows, gen)` is the scalar loss of a rank's rows (a CPU index tensor); in-batch contrast sees
    the rank's own rows, so `batch_size` is per rank, as on one process. `gen` is a CPU generator seeded per
    rank, for random augmentation. `fit.on_epoch(epoch, mean loss over ranks)` after each epoch; `stop()`,
    asked before each step (rank 0's answer holds on every rank), ends training early. `groups` (one integer
    per row, e.g. `formula_groups`): each epoch's shuffle keeps rows of a group contiguous and then shuffles
    whole rank batches (`data.loader.grouped_order`, as the ACML loader's `isomer_batches`), so a group's rows
    are each other's in-batch negatives. Returns (mean loss per finished epoch, rows seen on all ranks,
    stopped early)."""
    import torch
    import torch.distributed as dist

    rank, world, device = join(fit.device)
    epochs, seed = fit.epochs, fit.seed
    per_rank = min(fit.batch_size, n // world)
    if per_rank < 2:
        raise ValueError(f"{n} training rows cannot give each of {world} ranks a batch of 2")
    steps = n // (per_rank * world)
    warmup = int(0.15 * epochs * steps) if one_cycle else 0
    section = SimpleNamespace(precision="fp32", warmup_steps=warmup, micro_batch=per_rank, grad_accum=1,
                              grad_clip=0.0, lr=fit.lr, weight_decay=fit.weight_decay,
                              zero_stage=fit.zero_stage, extra_ds_config=None)  # fmt: skip
    config = build_ds_config(section, epochs * steps, on_gpu=device.type == "cuda")
    if not one_cycle:
        del config["scheduler"]  # a constant rate
    engine, _ = initialize_engine(model, config, fit.weight_decay)
    order_gen = torch.Generator().manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1 + rank)
    history: list[float] = []
    seen = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=order_gen)
        if groups is not None:
            order = torch.from_numpy(grouped_epoch_order(order.numpy(), groups, per_rank, (seed, epoch)))
        total = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, steps
        one = torch.ones((), dtype=torch.float64, device=device)
        for step in range(steps):
            if stop is not None and rank0_says(stop(), world, device):
                return history, seen, True
            first = (step * world + rank) * per_rank
            value = batch_loss(order[first : first + per_rank], gen)
            engine.backward(value)
            engine.step()
            total += torch.stack([value.detach().double(), one])
            seen += per_rank * world
        if world > 1:
            dist.all_reduce(total)
        history.append(float(total[0] / total[1]))
        if fit.on_epoch is not None:
            fit.on_epoch(epoch, history[-1])
    return history, seen, False


def grouped_epoch_order(perm: np.ndarray, groups: np.ndarray, batch_size: int, seed: Any) -> np.ndarray:
    """`perm` with each group's rows contiguous (groups in a random order drawn from `seed`) and its whole
    batches shuffled; a group larger than a batch spills into the next one."""
    from acml_dist.data.loader import grouped_order

    if len(groups) != len(perm):
        raise ValueError(f"groups has {len(groups)} entries for {len(perm)} rows")
    rng = np.random.default_rng(list(seed))
    rank = rng.permutation(int(groups.max()) + 1)[groups]  # a fresh random order of the groups
    return grouped_order(perm, [rank[perm]], batch_size, rng)


def held_out_r1(
    r1: Callable[[Any, np.ndarray], float],
    model: Any,
    twin: Any,
    train: np.ndarray,
    val: np.ndarray,
    pool: int,
) -> dict[str, float]:
    """R@1 of the trained model and its untrained twin on the `train` rows given and on the held-out rows
    (`r1(model, rows)`): {"train_r1", "untrained_train_r1"} and, when rows are held out, {"val_r1",
    "untrained_val_r1", "chance_r1"} (chance: 1 / the pool size)."""
    out = {"train_r1": r1(model, train), "untrained_train_r1": r1(twin, train)}
    if len(val):
        out["val_r1"] = r1(model, val)
        out["untrained_val_r1"] = r1(twin, val)
        out["chance_r1"] = 1.0 / min(pool, len(val))
    return out
