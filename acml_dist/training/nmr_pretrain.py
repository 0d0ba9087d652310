"""CReSS-style contrastive pretraining of the 13C NMR encoder (the published CReSS architecture,
`published.build_cress_nmr`: 4,000 bins -> Conv1d(1->32, k=400, s=200) -> 2 residual MLP blocks -> 768, L2
norm) against a frozen SMILES teacher's cached embeddings.

CReSS trained its NMR and SMILES encoders jointly with a CLIP loss; here the SMILES side is the frozen
teacher (e.g. rxnfp from `acml embed`), so only a linear head on its embedding trains with the NMR encoder.
`train_nmr13c_teacher(X, Y)` is a plain function (on DeepSpeed ranks: a world of one in this process, or a
launcher's); `paired_arrays(root, ...)` joins a dataset's `modalities/nmr13c` output with an embedding cache
by molecule key. Held-out retrieval (spectrum -> SMILES teacher, R@1 in a pool of up to `pool` molecules) is
reported for the trained encoder and its untrained twin (same initialisation, no step), so the gain is
measured in one run. `train_spectrum_teacher` trains the 1-D conv encoders of 1H NMR and MS the same way;
`acml pretrain-teacher` (`training/teacher_job.py`) runs it with MLflow tracking and registration. The loop
(split, data-parallel AdamW, held-out R@1 beside the twin) is `training/pair_training.py`'s, shared with the
image teacher; the online peak jitter (`jitter_peaks`) is this module's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from acml_dist.data.modalities import read_modality
from acml_dist.teachers.published import NMR_BINS, build_cress_nmr
from acml_dist.teachers.spectrum_conv import build_conv1d_encoder
from acml_dist.training.pair_training import FitOptions, fit_pairs, held_out_r1, paired_embeddings, start_fit


def paired_arrays(
    root: str | Path,
    teacher: str,
    modality: str = "nmr13c",
    splits: Sequence[str] = ("train", "val", "test"),
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, spectra float32 (N, bins), teacher embeddings float32 (N, D)) of molecules that have both."""
    spectra = read_modality(root, modality)
    keys, ys = paired_embeddings(root, teacher, spectra, splits)
    if not keys:
        raise ValueError(f"no molecule of {root} has both a {modality} spectrum and a {teacher} embedding")
    return keys, np.stack([spectra[k] for k in keys]).astype(np.float32), ys


def build_encoder(modality: str, n_bins: int, out_dim: int = 768) -> Any:
    """The spectrum encoder of a modality: CReSS's for nmr13c (4,000 bins), the 1-D conv one otherwise."""
    if modality == "nmr13c":
        if n_bins != NMR_BINS:
            raise ValueError(f"the CReSS 13C encoder takes {NMR_BINS} bins, the spectra have {n_bins}")
        return build_cress_nmr(out_dim=out_dim)
    return build_conv1d_encoder(n_bins, out_dim)


def build_pair_model(target_dim: int, out_dim: int = 768, encoder: Any = None) -> Any:
    """The trainable pair: the spectrum encoder (default: CReSS 13C), a linear head on the frozen teacher's
    embedding, a logit scale."""
    import torch
    from torch import nn

    class NmrPair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder if encoder is not None else build_cress_nmr(out_dim=out_dim)
            self.target_head = nn.Linear(target_dim, out_dim)
            # shape (1,), not 0-d: DeepSpeed broadcasts parameters as bytes, which a 0-d one cannot be
            self.logit_scale = nn.Parameter(torch.full((1,), float(np.log(1 / 0.07))))

        def encode_targets(self, y: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.target_head(y), dim=-1)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            """Symmetric CLIP loss over the batch."""
            a, b = self.encoder(x), self.encode_targets(y)
            logits = self.logit_scale.exp().clamp(max=100) * a @ b.T
            labels = torch.arange(len(x), device=x.device)
            return (
                nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)
            ) / 2

    return NmrPair()


def jitter_peaks(x: Any, gen: Any, shift: int = 0, drop: float = 0.0) -> Any:
    """A batch of binned spectra (B, bins) with every peak (non-zero bin) moved by its own random offset in
    [-shift, shift] bins and dropped with probability `drop` (a spectrum keeps at least its first peak); the
    random numbers come from the CPU generator `gen`. Peaks that land in one bin keep the larger value. For
    sparse peak lists (13C, MS); what regularises an encoder that memorises its few thousand spectra."""
    import torch

    if shift <= 0 and drop <= 0:
        return x
    rows, cols = x.nonzero(as_tuple=True)
    values = x[rows, cols]
    offsets = torch.randint(-shift, shift + 1, (len(values),), generator=gen).to(x.device)
    keep = (torch.rand(len(values), generator=gen) >= drop).to(x.device)
    first = torch.ones_like(keep)
    first[1:] = rows[1:] != rows[:-1]  # nonzero() lists each row's peaks together, in order
    keep |= first
    out = torch.zeros_like(x)
    moved = (cols + offsets).clamp(0, x.shape[1] - 1)
    flat = (rows * x.shape[1] + moved)[keep]
    return out.view(-1).scatter_reduce_(0, flat, values[keep], reduce="amax").view_as(x)


def retrieval_r1(model: Any, x: np.ndarray, y: np.ndarray, pool: int = 1000, seed: int = 0) -> float:
    """Spectrum -> teacher R@1 in pools of up to `pool` molecules (mean over pools)."""
    import torch

    order = np.random.default_rng(seed).permutation(len(x))
    hits = total = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), pool):
            idx = order[start : start + pool]
            a = model.encoder(torch.from_numpy(x[idx]))
            b = model.encode_targets(torch.from_numpy(y[idx]))
            hits += int((torch.argmax(a @ b.T, dim=1) == torch.arange(len(idx))).sum())
            total += len(idx)
    return hits / max(1, total)


def train_nmr13c_teacher(x: np.ndarray, y: np.ndarray, fit: Optional[FitOptions] = None,
                         **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """`train_spectrum_teacher` with the CReSS 13C encoder."""
    return train_spectrum_teacher(x, y, fit, modality="nmr13c", **kwargs)


def train_spectrum_teacher(
    x: np.ndarray,
    y: np.ndarray,
    fit: Optional[FitOptions] = None,
    *,
    modality: str = "nmr13c",
    out_dim: int = 768,
    peak_shift: int = 0,
    peak_drop: float = 0.0,
    groups: Optional[np.ndarray] = None,
) -> dict[str, Any]:
    """Train the pair on (spectra, frozen teacher embeddings) with the modality's encoder (`build_encoder`),
    on every DeepSpeed rank (`pair_training.fit_pairs` with `fit`, default `FitOptions()`), each batch's
    peaks jittered by up to `peak_shift` bins and dropped with probability `peak_drop` (`jitter_peaks`; 0:
    as stored); `groups` (one integer per row, e.g. formulas): `fit_pairs`'s grouped batches. Returns
    {"model" (the pair on the CPU; `.encoder` is the teacher), "history" (mean loss per epoch), "n_train",
    "n_val"} and, on rank 0, the held-out report ("val_r1", "untrained_val_r1", "chance_r1", "train_r1",
    "untrained_train_r1")."""
    import copy

    import torch

    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x (N, bins) and y (N, D) must pair row by row, got {x.shape} and {y.shape}")
    fit = fit or FitOptions()
    rank, dev, train, val = start_fit(fit, len(x))
    model = build_pair_model(y.shape[1], out_dim, build_encoder(modality, x.shape[1], out_dim))
    twin = copy.deepcopy(model)  # the untrained twin: same initialisation, no step
    xt, yt = torch.from_numpy(x[train]).to(dev), torch.from_numpy(y[train]).to(dev)

    def batch_loss(rows: Any, gen: Any) -> Any:
        rows = rows.to(dev)
        return model(jitter_peaks(xt[rows], gen, peak_shift, peak_drop), yt[rows])

    train_groups = None if groups is None else groups[train]
    history, _, _ = fit_pairs(model, len(train), batch_loss, fit, groups=train_groups)
    model.cpu()
    out: dict[str, Any] = {"model": model, "history": history, "n_train": len(train), "n_val": len(val)}
    if rank == 0:  # the other ranks hold the same weights: one report
        r1 = lambda m, rows: retrieval_r1(m, x[rows], y[rows], fit.pool)  # noqa: E731
        out.update(held_out_r1(r1, model, twin, train, val, fit.pool))
    return out


def save_nmr13c_teacher(model: Any, path: str | Path) -> Path:
    """Save the trained 13C encoder in the layout of the published CReSS checkpoint (`nmr_model.*`), so
    `teachers.<name>: {kind: cress_nmr13c, path: <file>}` loads it like the published weights."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"nmr_model.{k}": v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}
    torch.save(state, path)
    return path
