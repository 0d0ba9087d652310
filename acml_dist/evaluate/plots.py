"""Figures as PNG files (matplotlib, Agg backend): recall@k curves, isomer accuracy by set size, an
embedding map, probe scores, fine-tuning curves. Each function returns the path it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def recall_curves(curves: dict[str, np.ndarray], path: Path, title: str = "Cross-modal retrieval") -> Path:
    """`curves`: label -> recall@k for k = 1..K."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, rec in curves.items():
        ax.plot(np.arange(1, len(rec) + 1), rec, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path)


def isomer_bars(rows: list[dict], path: Path) -> Path:
    """Top-1 by isomer-set size for each direction, with chance level."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    directions = sorted({r["direction"] for r in rows})
    labels = [r["set_size"] for r in rows if r["direction"] == directions[0]] if directions else []
    width = 0.8 / max(len(directions), 1)
    for i, d in enumerate(directions):
        sub = [r for r in rows if r["direction"] == d]
        ax.bar(np.arange(len(sub)) + i * width, [r["top1"] for r in sub], width, label=d)
    if directions:
        chance = [r["chance_top1"] for r in rows if r["direction"] == directions[0]]
        centres = np.arange(len(chance)) + 0.4 - width / 2
        ax.scatter(centres, chance, color="k", marker="_", s=300, label="chance")
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
    ax.set_xlabel("isomer-set size")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return _save(fig, path)


def embedding_map(
    x: np.ndarray, color: np.ndarray, label: str, path: Path, seed: int = 0, method: str = "auto"
) -> tuple[Path, str]:
    """2-D map of embeddings coloured by a property: UMAP (`auto`: when umap-learn is importable) or t-SNE."""
    xy = None
    if method in ("auto", "umap"):
        try:
            import umap

            # A seed makes UMAP single-threaded anyway; saying n_jobs=1 keeps it from warning about it.
            neighbours = min(15, len(x) - 1)
            reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=neighbours, n_jobs=1)
            xy, method = reducer.fit_transform(x), "UMAP"
        except ImportError:
            if method == "umap":
                raise
    if xy is None:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(x) - 1) / 3)
        xy, method = TSNE(2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(x), "t-SNE"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.2))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=color, s=4, cmap="viridis")
    fig.colorbar(sc, ax=ax, label=label)
    ax.set_title(f"{method} of graph embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path), method


def probe_bars(table, sources: list[str], path: Path) -> Path:
    """Grouped bars: probe score per property for each embedding source (R2 or ROC-AUC)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(table)), 4))
    width = 0.8 / max(len(sources), 1)
    for i, s in enumerate(sources):
        ax.bar(np.arange(len(table)) + i * width, table[s].to_numpy(dtype=float), width, label=s)
    ax.set_xticks(np.arange(len(table)) + 0.4 - width / 2, table["property"], rotation=70, fontsize=7)
    ax.set_ylabel("R2 (descriptors) / ROC-AUC (groups)")
    ax.set_ylim(min(0.0, float(np.nanmin(table[sources].to_numpy(dtype=float)))), 1)
    ax.legend(fontsize=7)
    return _save(fig, path)


def finetune_curves(curves: dict[str, list[dict]], metric: str, path: Path, title: str) -> Path:
    """Validation metric per epoch for each method (label -> list of epoch records)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for label, curve in curves.items():
        epochs = [c["epoch"] for c in curve]
        axes[0].plot(epochs, [c["train_loss"] for c in curve], label=label)
        axes[1].plot(epochs, [c[f"val_{metric}"] for c in curve], label=label)
    axes[0].set_ylabel("train loss")
    axes[1].set_ylabel(f"validation {metric}")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
