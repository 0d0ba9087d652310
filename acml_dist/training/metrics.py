"""What training measures as it goes: in-batch top-1 on the training batch, graph -> teacher top-1 on
held-out molecules (evaluate's `retrieval_ranks` in pools of 128 molecules that have the modality, summed
over ranks), the loss / throughput window between log lines (a sparse modality's loss averaged over the
micro-batches that had it), the loss curve and the end-of-run table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from acml_dist.data.shards import dataset_manifest
from acml_dist.evaluate.retrieval import retrieval_ranks


def held_out_split(root: Path) -> str | None:
    """The split training validates on: val when it holds molecules, else test; None when neither does."""
    splits = dataset_manifest(root).get("splits", {})
    split = "val" if splits.get("val", {}).get("samples") else "test"  # held-out molecules either way
    return split if splits.get(split, {}).get("samples") else None


def retrieval_summary(sums: dict[str, list[float]], names: list[str], world: int) -> dict[str, float]:
    """Held-out top-1 per teacher from (hits, rows) of this rank (`pooled_top1`), summed over ranks;
    `retrieval_top1` is the first teacher's, as evaluate's headline."""
    totals = torch.tensor([sums[n] for n in names], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(totals)
    out = {
        f"retrieval_top1_{n}": float(totals[i, 0] / max(1.0, float(totals[i, 1])))
        for i, n in enumerate(names)
    }
    out["retrieval_top1"] = out[f"retrieval_top1_{names[0]}"]
    return out


def present_projections(model: Any, batch: Any, dtype: Any) -> dict[str, tuple[Any, Any]]:
    """(graph, teacher) projections (float32 numpy) of the batch's molecules that have each modality."""
    out = {}
    with torch.no_grad():
        h = model.encode(batch.graph)
        for name, emb in batch.embeddings.items():
            mask = batch.masks.get(name, torch.ones(len(batch), dtype=torch.bool)).to(h.device)
            g = model.project_graph(h, name)[mask].float().cpu().numpy()
            out[name] = (g, model.project_teacher(emb.to(dtype), name)[mask].float().cpu().numpy())
    return out


def pooled_top1(pairs: list[tuple[Any, Any]], pool: int = 128) -> list[float]:
    """[hits, queries] of graph -> teacher top-1 in pools of `pool` molecules that all have the modality
    (the authors' in-batch protocol: their batches held one modality pair), over this rank's held-out rows.
    A sparse modality is not ranked among the few of a 128-molecule batch that happen to have it."""
    if not pairs:
        return [0.0, 0.0]
    g, t = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    if len(g) < 2:
        return [0.0, 0.0]
    return [float((retrieval_ranks(g, t, pool) == 1).sum()), float(len(g))]


def batch_top1(out: dict[str, Any], masks: dict[str, Any]) -> dict[str, float]:
    """Graph -> teacher top-1 inside the training micro-batch just stepped (a cheap progress signal)."""
    top1 = {}
    with torch.no_grad():
        for name, (g, t, _) in out.items():
            mask = masks.get(name)
            g, t = (g, t) if mask is None else (g[mask], t[mask])
            if len(g):
                sims = (
                    torch.nn.functional.normalize(g.float(), dim=-1)
                    @ torch.nn.functional.normalize(t.float(), dim=-1).T
                )
                top1[name] = float((sims.argmax(1) == torch.arange(len(g), device=g.device)).float().mean())
    return top1


def step_values(total: Any, losses: dict[str, Any], masks: dict[str, Any]) -> Any:
    """[total, loss per teacher..., fraction of this rank's batch having each teacher's modality...]: one
    tensor to all-reduce (the mean over ranks of a fraction is the global fraction for equal batches)."""
    fracs = [masks[n].float().mean() if n in masks else torch.ones((), device=total.device) for n in losses]
    parts = [total.detach().float()] + [v.detach().float() for v in losses.values()]
    return torch.stack(parts + [f.to(parts[0].device) for f in fracs])


def step_record(step: int, values: Any, names: list[str]) -> dict[str, float]:
    """The history row of a step: a teacher whose modality no molecule of the step had has no loss (its
    value there is a placeholder 0), only `valid_frac_<name>` = 0."""
    v, k = values.tolist(), len(names)
    record = {"step": step, "loss": v[0]}
    for i, n in enumerate(names):
        if len(v) <= 1 + k or v[1 + k + i] > 0:
            record[f"loss_{n}"] = v[1 + i]
        if len(v) > 1 + k:
            record[f"valid_frac_{n}"] = v[1 + k + i]
    return record


class MetricWindow:
    """Loss / throughput accumulated between two log lines. A teacher's loss is averaged over the
    micro-batches in which some molecule had its modality (see `step_values`), not diluted by the others."""

    def __init__(self) -> None:
        self.sums: Any = None
        self.present: Any = None
        self.names: list[str] = []
        self.count, self.molecules, self.seconds = 0, 0, 0.0

    def add(self, values: Any, names: list[str], molecules: int) -> None:
        k = len(names)
        if len(values) > 1 + k:  # per-teacher fractions follow the losses: mask absent losses (no sync)
            present = (values[1 + k :] > 0).to(values.dtype)
            values = values.clone()
            values[1 : 1 + k] *= present
            self.present = present if self.present is None else self.present + present
        self.sums = values.clone() if self.sums is None else self.sums + values
        self.names, self.count, self.molecules = names, self.count + 1, self.molecules + molecules

    def flush(self) -> dict[str, float]:
        mean = (self.sums / max(1, self.count)).tolist() if self.sums is not None else [float("nan")]
        out = {"loss": mean[0]}
        k = len(self.names)
        present = self.present.tolist() if self.present is not None else [float(self.count)] * k
        for i, n in enumerate(self.names):
            if present[i] > 0:
                out[f"loss_{n}"] = mean[1 + i] * self.count / present[i]
            if len(mean) > 1 + k:
                out[f"valid_frac_{n}"] = mean[1 + k + i]
        out["molecules_per_s"] = self.molecules / max(self.seconds, 1e-9)
        self.__init__()
        return out


def plot_loss_curve(history: list[dict[str, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for key in sorted({k for h in history for k in h if k.startswith("loss")}):
        ax.plot(steps, [h.get(key, math.nan) for h in history], label=key, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_table(metrics: dict[str, Any], names_shown: int = 5) -> str:
    """The end-of-run table a training command prints: one metric a line; a list (skipped shard names) as
    its first `names_shown` items and how many more."""

    def shown(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            more = f" (+{len(v) - names_shown} more)" if len(v) > names_shown else ""
            return (", ".join(map(str, v[:names_shown])) or "-") + more
        return str(v)

    width = max(len(k) for k in metrics)
    lines = ["", f"{'metric':<{width}}  value", "-" * (width + 14)]
    return "\n".join(lines + [f"{k:<{width}}  {shown(v)}" for k, v in metrics.items()])
