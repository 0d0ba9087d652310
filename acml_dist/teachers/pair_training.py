"""The training loop every teacher trained here shares (`image_pretrain`, `nmr_pretrain`): a modality's input
paired row by row with a frozen SMILES teacher's embeddings, a train / held-out split, AdamW over shuffled
batches, and held-out R@1 of the trained model beside its untrained twin.

What differs per modality stays in its module: the model, how a batch becomes a loss (augmentation, autocast,
the loss itself) and how R@1 is counted (its pools)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import numpy as np


def split_pairs(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of `n` pairs: a seeded permutation, the first round(n x val_fraction)
    held out; ValueError when fewer than 2 are left to train on."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if n - n_val < 2:
        raise ValueError(f"{n} pairs leave fewer than 2 to train on")
    return perm[n_val:], perm[:n_val]


def fit_pairs(
    model: Any,
    n: int,
    batch_loss: Callable[[Any, Any], Any],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    one_cycle: bool = False,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> tuple[list[float], int]:
    """AdamW (`one_cycle`: with a one-cycle schedule, 15% warm-up) over `epochs` shuffled passes of `n`
    training rows in batches of `batch_size`; a last batch of one row is skipped (in-batch contrast needs
    two). `batch_loss(rows, gen)` is the scalar loss of the rows (a CPU index tensor); `gen` is the loop's
    seeded CPU generator (the shuffles draw from it too), for random augmentation. `on_epoch(epoch, mean
    loss)` after each epoch. Returns (mean loss per epoch, rows seen)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = None
    if one_cycle:
        steps = max(1, epochs * max(1, math.ceil(n / batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    seen = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        losses = []
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            if len(rows) < 2:
                continue
            value = batch_loss(rows, gen)
            opt.zero_grad()
            value.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(float(value.detach()))
            seen += len(rows)
        history.append(float(np.mean(losses)))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    return history, seen


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
