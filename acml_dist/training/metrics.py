"""What training measures as it goes: in-batch top-1 on the training batch, graph -> teacher top-1 on
held-out molecules (evaluate's `retrieval_ranks` with the batch as the pool, summed over ranks), the loss /
throughput window between log lines, and the loss curve."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from acml_dist.data.shards import dataset_manifest
from acml_dist.evaluate.retrieval import retrieval_ranks


def retrieval_top1(model: Any, batch: Any, dtype: Any) -> dict[str, tuple[float, float]]:
    """Within-batch graph -> teacher top-1: (hits, valid rows) per teacher, this rank's batch. The rank is
    evaluate's own `retrieval_ranks` (cosine, ties in the query's favour) with the batch as the pool, so
    training-time and evaluation-time retrieval are one metric."""
    hits = {}
    with torch.no_grad():
        h = model.encode(batch.graph)
        for name, emb in batch.embeddings.items():
            mask = batch.masks.get(name, torch.ones(len(batch), dtype=torch.bool)).to(h.device)
            if mask.sum() == 0:
                hits[name] = (0.0, 0.0)
                continue
            g = model.project_graph(h, name)[mask].float().cpu().numpy()
            t = model.project_teacher(emb.to(dtype), name)[mask].float().cpu().numpy()
            hits[name] = (float((retrieval_ranks(g, t, 0) == 1).sum()), float(len(g)))
    return hits


def held_out_split(root: Path) -> str | None:
    """The split training validates on: val when it holds molecules, else test; None when neither does."""
    splits = dataset_manifest(root).get("splits", {})
    split = "val" if splits.get("val", {}).get("samples") else "test"  # held-out molecules either way
    return split if splits.get(split, {}).get("samples") else None


def retrieval_summary(sums: dict[str, list[float]], names: list[str], world: int) -> dict[str, float]:
    """Held-out top-1 per teacher from (hits, rows) summed over this rank's batches, then over ranks;
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


class MetricWindow:
    """Loss / throughput accumulated between two log lines."""

    def __init__(self) -> None:
        self.sums: Any = None
        self.names: list[str] = []
        self.count, self.molecules, self.seconds = 0, 0, 0.0

    def add(self, values: Any, names: list[str], molecules: int) -> None:
        self.sums = values.clone() if self.sums is None else self.sums + values
        self.names, self.count, self.molecules = names, self.count + 1, self.molecules + molecules

    def flush(self) -> dict[str, float]:
        mean = (self.sums / max(1, self.count)).tolist() if self.sums is not None else [float("nan")]
        out = {"loss": mean[0], **{f"loss_{n}": mean[i + 1] for i, n in enumerate(self.names)}}
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
