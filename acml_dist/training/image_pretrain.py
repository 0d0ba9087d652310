"""Img2Mol-style pretraining of the image teacher (`teachers/image_cnn.py`) against a frozen SMILES teacher.

Img2Mol regresses the CDDD embedding (tanh outputs, a regression loss). Here the target is the cached
embedding of the frozen SMILES teacher (e.g. rxnfp from `acml embed`), standardised per dimension with the
training set's mean and std (rxnfp's CLS vectors share a large common component: raw MSE would mostly
fit the mean). The loss is chosen for what the teacher is used for, retrieval among many molecules:
`cosine_nce` (default) = (1 - cosine(prediction, target)) + `nce_weight` x an in-batch InfoNCE term
(temperature `temperature`, both directions) that pushes each prediction nearer its own target than the
batch's others; `cosine` is the plain regression, `mse` Img2Mol's.

Augmentation (online, on the batch, torch): a random rotation (+-`rotation` degrees) and scale
(`scale` range) by one affine resampling with white fill, and a random line width (ink dilated or eroded
by a 3x3 max-pool, blended by a random amount). Held-out retrieval (image -> SMILES teacher, R@1 in pools
of up to `pool`) is reported for the trained CNN and its untrained twin (same initialisation, no step).
The loop (split, AdamW with a one-cycle schedule on DeepSpeed ranks, held-out R@1) is
`training/pair_training.py`'s, shared with the spectrum teachers; the batch loss (augmentation, autocast)
and the R@1 pools are this module's."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from acml_dist.training.pair_training import FitOptions, fit_pairs, held_out_r1, paired_embeddings, start_fit


def paired_images(
    root: str | Path, teacher: str, modality: str = "image", splits: Sequence[str] = ("train", "val", "test")
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, images uint8 (N, S, S), teacher embeddings float32 (N, D)) of molecules that have both."""
    from acml_dist.data.modalities import read_images

    img_keys, images = read_images(root, modality)
    row = {k: i for i, k in enumerate(img_keys)}
    keys, ys = paired_embeddings(root, teacher, row, splits)
    if not keys:
        raise ValueError(f"no molecule of {root} has both a {modality} depiction and a {teacher} embedding")
    return keys, images[np.array([row[k] for k in keys])], ys


def augment(
    x: Any,
    gen: Any,
    rotation: float = 15.0,
    scale: tuple[float, float] = (0.85, 1.1),
    line_width: float = 0.5,
) -> Any:
    """Random rotation, scale and line width of a batch (B, 1, r, r) in [0, 1] (paper = 1)."""
    import torch
    from torch.nn import functional as F

    b, dev = x.shape[0], x.device  # random parameters drawn on the CPU generator (same on any device)
    ink = 1.0 - x
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(rotation)
    s = scale[0] + torch.rand(b, generator=gen) * (scale[1] - scale[0])
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    ink = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if line_width > 0:  # per sample: thicker (dilate ink), thinner (erode ink) or unchanged, blended
        thick = F.max_pool2d(ink, 3, 1, 1)
        thin = -F.max_pool2d(-ink, 3, 1, 1)
        choice = torch.randint(0, 3, (b, 1, 1, 1), generator=gen).to(dev)
        alpha = (torch.rand(b, 1, 1, 1, generator=gen) * line_width).to(dev, x.dtype)
        target = torch.where(choice == 1, thick, torch.where(choice == 2, thin, ink))
        ink = ink + alpha * (target - ink)
    return 1.0 - ink


def image_loss(pred: Any, z: Any, kind: str = "cosine_nce", nce_weight: float = 1.0,
               temperature: float = 0.05) -> Any:  # fmt: skip
    import torch
    from torch.nn import functional as F

    if kind == "mse":
        return F.mse_loss(pred, z)
    a, b = F.normalize(pred, dim=-1), F.normalize(z, dim=-1)
    loss = (1.0 - (a * b).sum(-1)).mean()
    if kind == "cosine_nce" and nce_weight > 0 and len(pred) > 1:
        logits = a @ b.T / temperature
        labels = torch.arange(len(pred), device=pred.device)
        loss = loss + nce_weight * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    elif kind not in ("cosine", "cosine_nce"):
        raise ValueError(f"image loss must be cosine_nce, cosine or mse, got {kind!r}")
    return loss


def predict(model: Any, x: np.ndarray, batch: int = 256) -> Any:
    """Standardised target predictions (N, D) float32 CPU of uint8 images (N, r, r), eval mode, no grad."""
    import torch

    model.eval()
    dev = next(model.parameters()).device
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = torch.from_numpy(x[start : start + batch]).to(dev).float().div_(255.0).unsqueeze(1)
            outs.append(model(xb).float().cpu())
    return torch.cat(outs)


def retrieval_r1(model: Any, x: np.ndarray, z: np.ndarray, pool: int = 1000, seed: int = 0) -> float:
    """Image -> teacher R@1 (cosine) in random pools of exactly `pool` molecules (the remainder is left out;
    fewer than `pool` molecules: one pool of all), hits pooled over pools."""
    import torch
    from torch.nn import functional as F

    a = F.normalize(predict(model, x), dim=-1)
    b = F.normalize(torch.from_numpy(z), dim=-1)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    size = min(pool, len(x))
    n = (len(x) // size) * size if size else 0
    hits = 0
    for start in range(0, n, size):
        idx = order[start : start + size]
        hits += int((torch.argmax(a[idx] @ b[idx].T, dim=1) == torch.arange(len(idx))).sum())
    return hits / max(1, n)


def train_image_teacher(
    images: np.ndarray,
    y: np.ndarray,
    fit: Optional[FitOptions] = None,
    *,
    arch: Optional[dict[str, int]] = None,
    loss: str = "cosine_nce",
    nce_weight: float = 1.0,
    temperature: float = 0.05,
    augmentation: bool = True,
    max_seconds: Optional[float] = None,
    groups: Optional[np.ndarray] = None,
) -> dict[str, Any]:
    """Train the CNN on (uint8 depictions (N, S, S), frozen teacher embeddings (N, D)) on every DeepSpeed rank
    (`pair_training.fit_pairs` with `fit`, default 10 epochs; on CUDA bf16 autocast, the images held on the
    GPU). Returns {"model" (on the CPU), "history", "n_train", "n_val", "arch", "images_per_s" (all ranks),
    "stopped_early"} and, on rank 0, the held-out report ("val_r1", "untrained_val_r1", "chance_r1",
    "train_r1", "untrained_train_r1"). `max_seconds`: training stops before the first step past that many
    seconds on rank 0's clock (the one-cycle schedule is then cut short; history holds the finished epochs)
    and the held-out evaluation runs as usual. `groups` (one integer per row, e.g. formulas): `fit_pairs`'s
    grouped batches."""
    import copy

    import torch

    from acml_dist.teachers.image_cnn import arch as full_arch
    from acml_dist.teachers.image_cnn import build_image_cnn, to_resolution

    if images.ndim != 3 or y.ndim != 2 or len(images) != len(y):
        raise ValueError(f"images (N, S, S) and y (N, D) must pair row by row, got {images.shape}, {y.shape}")
    fit = fit or FitOptions(epochs=10)
    rank, dev, train, val = start_fit(fit, len(images))
    a = full_arch({**(arch or {}), "out_dim": y.shape[1]})
    x = to_resolution(images, a["resolution"])
    mean, std = y[train].mean(0), y[train].std(0)
    std = np.where(std < 1e-6, 1.0, std).astype(np.float32)  # a dimension constant in training: unscaled
    z = ((y - mean) / std).astype(np.float32)
    model = build_image_cnn(**a)
    model.target_mean.copy_(torch.from_numpy(mean))
    model.target_std.copy_(torch.from_numpy(std))
    twin = copy.deepcopy(model)  # the untrained twin: same initialisation and standardisation, no step
    xt, zt = torch.from_numpy(x[train]).to(dev), torch.from_numpy(z[train]).to(dev)
    batch_loss = _batch_loss(model, xt, zt, loss=loss, nce_weight=nce_weight, temperature=temperature,
                             augmentation=augmentation)  # fmt: skip
    t0 = time.time()
    deadline = t0 + (max_seconds if max_seconds is not None else math.inf)
    stop = None if max_seconds is None else lambda: time.time() >= deadline
    history, seen, stopped = fit_pairs(
        model,
        len(train),
        batch_loss,
        fit,
        one_cycle=True,
        stop=stop,
        groups=None if groups is None else groups[train],
    )
    rate = seen / max(1e-9, time.time() - t0)
    out: dict[str, Any] = {"history": history, "n_train": len(train), "n_val": len(val), "arch": a,
                           "images_per_s": rate, "stopped_early": stopped}  # fmt: skip
    if rank == 0:  # the other ranks hold the same weights: one report
        twin.to(dev)
        out.update(held_out_r1(lambda m, rows: retrieval_r1(m, x[rows], z[rows], fit.pool), model, twin,
                               train[: fit.pool], val, fit.pool))  # fmt: skip
    out["model"] = model.cpu().eval()
    return out


def _batch_loss(model: Any, xt: Any, zt: Any, *, loss: str, nce_weight: float, temperature: float,
                augmentation: bool) -> Callable[[Any, Any], Any]:  # fmt: skip
    """The loss of a batch of rows of uint8 images `xt` and standardised targets `zt` (on the model's
    device; bf16 autocast on CUDA), augmented with the loop's generator."""
    import torch

    device = xt.device  # the rank's device: the engine put the model there too
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")

    def batch_loss(rows: Any, gen: Any) -> Any:
        idx = rows.to(device)
        xb = xt[idx].float().div_(255.0).unsqueeze(1)
        if augmentation:
            xb = augment(xb, gen)
        with autocast:
            pred = model(xb)
        return image_loss(pred.float(), zt[idx], loss, nce_weight, temperature)

    return batch_loss
