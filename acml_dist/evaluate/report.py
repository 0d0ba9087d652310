"""Markdown tables and the evaluation report; a rich table for the terminal."""

from __future__ import annotations

import math
from typing import Any

PRETTY = {
    "acml_finetune": "ACML GIN, fine-tuned",
    "scratch_finetune": "GIN from scratch (baseline)",
    "acml_linear": "ACML GIN, linear probe (frozen)",
    "random_linear": "random-init GIN, linear probe (frozen)",
}

RETRIEVAL_INTRO = (
    "## Cross-modal retrieval\n\nRank of the true partner in its pool (cosine similarity of the "
    "projections), both directions; pool 128 is the within-batch protocol of the authors, "
    "`all` the whole split.\n\n"
)
ISOMER_INTRO = (
    "## Isomer discrimination\n\nMolecules grouped by molecular formula; each ranks its partner among its "
    "isomers only. Chance: 1/n (top-1), H_n/n (MRR).\n\n"
)
PROBE_INTRO = (
    "## Chemical semantics: linear probes\n\nR2 for RDKit descriptors, ROC-AUC for functional groups, read "
    "linearly from the GIN representation (before the projection heads), from a randomly initialised GIN of "
    "the same architecture, and from each teacher's own embedding.\n\n"
)


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    headers = headers or columns
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def mean_std(pair: tuple[float, float] | None) -> str:
    if pair is None or math.isnan(pair[0]):
        return "n/a"
    return f"{pair[0]:.3f} ± {pair[1]:.3f}"


def property_rows(name: str, result: dict, metrics: list[str]) -> list[dict]:
    rows = []
    for method, scores in result["summary"].items():
        row = {"dataset": name, "method": PRETTY.get(method, method)}
        row.update({m: mean_std(scores.get(m)) for m in metrics})
        rows.append(row)
    return rows


def property_section(results: dict[str, dict], seeds: list[int], split_kind: str) -> str:
    """One table per task type: mean ± std over seeds for every method."""
    out = []
    for task, metrics in (("regression", ["rmse", "mae"]), ("classification", ["roc_auc", "pr_auc"])):
        rows = []
        for name, res in results.items():
            if res["task"] == task:
                rows += property_rows(name, res, metrics)
        if rows:
            out.append(
                f"{task.capitalize()} ({split_kind} split 80/10/10, seeds {list(seeds)}, test set, "
                f"mean ± std; {'lower' if task == 'regression' else 'higher'} is better):\n\n"
                + table(
                    rows,
                    ["dataset", "method"] + metrics,
                    ["dataset", "method"] + [m.upper() for m in metrics],
                )
            )
    return "\n\n".join(out)


def dataset_notes(results: dict[str, dict]) -> str:
    rows = [
        {
            "dataset": name,
            "rows": res["rows"],
            "valid": res["valid"],
            "invalid SMILES": res["invalid"],
            "missing labels": res["missing_labels"],
            "train/val/test": "/".join(str(res["split"].get(k, 0)) for k in ("train", "val", "test")),
        }
        for name, res in results.items()
    ]
    return table(rows, list(rows[0])) if rows else ""


def print_summary(title: str, metrics: dict[str, Any], keys: list[str] | None = None) -> None:
    """Readable terminal summary of the headline metrics."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in keys or sorted(metrics):
        if key in metrics:
            t.add_row(key, fmt(metrics[key]))
    Console().print(t)
