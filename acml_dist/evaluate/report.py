"""Markdown tables and the evaluation report; a rich table for the terminal."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PRETTY = {
    "acml_finetune": "ACML GIN, fine-tuned",
    "scratch_finetune": "GIN from scratch (baseline)",
    "acml_linear": "ACML GIN, linear probe (frozen)",
    "random_linear": "random-init GIN, linear probe (frozen)",
    "train_mean": "train-mean predictor (floor)",
}

SPLIT_RULES = {
    "scaffold": "deterministic Bemis-Murcko scaffold split (DeepChem/MoleculeNet rule: scaffold sets largest "
    "first into train, then validation, then test); the seeds vary only the model initialisation and the "
    "batch order, never the split",
    "scaffold_balanced": "balanced scaffold split (chemprop rule: scaffold sets bigger than half the "
    "validation or test size go to train first, the rest in an order shuffled by the seed); the seed varies "
    "the split as well as the initialisation",
    "random": "random split, permuted by the seed",
    "column": "the file's own split (`data.split_column`: each row in the part it names), the same for every "
    "seed",
}
CHIRALITY_RULES = {
    "drop": "chirality tags set to 0 on every fine-tuned and tested molecule (the pretraining corpus has no "
    "stereochemistry, so the tag embeddings were never trained)",
    "zero": "the CW/CCW chirality tag rows set to the unspecified row before fine-tuning, then trained (a "
    "corpus without stereochemistry leaves them untrained: a tagged atom starts out read as untagged)",
    "keep": "chirality tags as featurised (untrained tag rows are read as they are)",
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


def shares(split_kind: str, fractions: Any = (0.8, 0.1, 0.1)) -> str:
    """The parts' shares as the report writes them: 80/10/10, or the file's own for a column split."""
    return "shares as in the file" if split_kind == "column" else "/".join(f"{100 * f:g}" for f in fractions)


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
    widths, schemas = result.get("widths", {}), result.get("schemas", {})
    for method, scores in result["summary"].items():
        other = schemas.get(method) and schemas.get(method) != schemas.get("acml_finetune")
        row = {
            "dataset": name,
            "method": PRETTY.get(method, method) + (f", {schemas[method].upper()} schema" if other else ""),
            "width": widths.get(method, ""),
            "key": method,
        }
        row.update({m: mean_std(scores.get(m)) for m in metrics})
        rows.append(row)
    return rows


def property_section(results: dict[str, dict], seeds: list[int], split_kind: str, split_shares: str) -> str:
    """One table per task type: mean ± std over seeds for every method."""
    out = []
    for task, metrics in (("regression", ["rmse", "mae"]), ("classification", ["roc_auc", "pr_auc"])):
        rows = []
        for name, res in results.items():
            if res["task"] == task:
                rows += property_rows(name, res, metrics)
        if rows:
            out.append(
                f"{task.capitalize()} ({split_kind} split {split_shares}, seeds {list(seeds)}, test set, "
                f"mean ± std; {'lower' if task == 'regression' else 'higher'} is better):\n\n"
                + table(
                    rows,
                    ["dataset", "method", "width"] + metrics,
                    ["dataset", "method", "GIN width"] + [m.upper() for m in metrics],
                )
            )
    return "\n\n".join(out)


def paired_rows(results: dict[str, dict]) -> list[dict]:
    """Per dataset: the fine-tuned encoder against from scratch, seed by seed (`paired_comparison`)."""
    rows = []
    for name, res in results.items():
        pc = res.get("paired")
        if pc:
            rows.append({
                "dataset": name,
                "metric": pc["metric"].upper(),
                "fine-tuned - scratch": f"{pc['mean_diff']:+.3f} ± {pc['std_diff']:.3f}",
                "fine-tuned better in": f"{pc['wins']} of {pc['seeds']} seeds",
                "paired t-test p": "n/a" if math.isnan(pc["p"]) else f"{pc['p']:.2g}",
                "verdict": pc["verdict"],
            })  # fmt: skip
    return rows


def paired_section(results: dict[str, dict]) -> str:
    rows = paired_rows(results)
    if not rows:
        return ""
    return (
        "Fine-tuned against from scratch, seed by seed (each seed fits both on the same split; mean ± std of "
        "the per-seed difference; a method is named better only where p < 0.05):\n\n"
        + table(rows, list(rows[0]))
    )


def dataset_notes(results: dict[str, dict]) -> str:
    rows = [
        {
            "dataset": name,
            "rows": res["rows"],
            "valid": res["valid"],
            "invalid SMILES": res["invalid"],
            "missing labels": res["missing_labels"],
            "train/val/test": "/".join(str(res["split"].get(k, 0)) for k in ("train", "val", "test")),
            "chirality-tagged train/val/test": "/".join(
                f"{100 * res.get('chirality', {}).get('tagged', {}).get(k, float('nan')):.1f}%"
                for k in ("train", "val", "test")
            ),
        }
        for name, res in results.items()
    ]
    return table(rows, list(rows[0])) if rows else ""


def recipe_text(ecfg: Any, split_kind: str, split_shares: str = "80/10/10") -> str:
    """The fine-tuning recipe, split rule, chirality handling and floor, as the report states them."""
    scratch = ecfg.scratch_emb_dim or "the pretrained encoder's"
    width = "(a published baseline width; the pretrained encoder keeps its own)" * bool(ecfg.scratch_emb_dim)
    if getattr(ecfg, "scratch_schema", ""):
        width += f" with the {ecfg.scratch_schema.upper()} atom/bond schema (as published baselines' input)"
    stopping = f"early stopping after {ecfg.patience} epochs without a better validation score"
    if ecfg.patience >= ecfg.finetune_epochs:
        stopping = "the whole budget trained (patience >= epochs)"
    tuned = "fine-tuned end to end"
    frozen = int(getattr(ecfg, "pretrained_frozen_epochs", 0))
    rate = float(getattr(ecfg, "pretrained_lr", 1.0))
    if frozen:
        tuned += f" after its first {frozen} epochs with the encoder frozen (the head alone learns)"
    if rate != 1.0:
        tuned += f", the encoder at {rate:g} x the rate"
    weights = "weights"
    if float(getattr(ecfg, "ema", 0.0)):
        weights = (
            f"moving average of the weights (decay {ecfg.ema:g} per step, its horizon at most a tenth of the "
            "run; validation reads it too)"
        )
    head = "a 2-layer MLP head"
    if getattr(ecfg, "mol_features", ""):
        head += (f" reading the embedding and the molecule's {ecfg.mol_features} descriptors (each through "
                 "its CDF on the training split)")  # fmt: skip
    return (
        "Recipe (the default of `acml finetune` and of this section; `eval.*` keys): for each seed, the "
        f"pretrained GIN with {head}, {tuned}, and the same architecture trained "
        f"from scratch at width {scratch} {width}, "
        f"both with AdamW (lr {ecfg.lr}, weight decay {ecfg.weight_decay}), batch {ecfg.batch_size}, up to "
        f"{ecfg.finetune_epochs} epochs, linear warm-up over {100 * ecfg.warmup:g}% of the steps then "
        f"{ecfg.schedule} decay to {ecfg.final_lr:g} x lr, {stopping}, "
        f"and the best validation epoch's {weights} restored before the "
        "test set is scored. Regression targets are standardised on the training split. Linear probes: "
        "ridge / logistic regression on frozen embeddings.\n\n"
        f"- Split: {SPLIT_RULES.get(split_kind, split_kind)}; {split_shares}.\n"
        f"- Chirality: {CHIRALITY_RULES.get(ecfg.chirality, ecfg.chirality)}.\n"
        "- Floor: the train-mean predictor (every test molecule predicted as the training mean) is in the "
        "table; a model that does not beat it has learnt nothing.\n"
        "- Why these defaults (chirality, budget), measured: docs/finetune_recipe.md."
    )


def property_report(results: dict, failures: dict, ecfg: Any, split_kind: str,
                    fractions: Any = (0.8, 0.1, 0.1)) -> str:  # fmt: skip
    """The property-prediction section: recipe, tables, dataset notes, curves, unavailable datasets."""
    split_shares = shares(split_kind, fractions)
    parts = [
        "## Property prediction\n\n" + recipe_text(ecfg, split_kind, split_shares),
        property_section(results, list(ecfg.seeds), split_kind, split_shares),
        paired_section(results),
        ("Datasets:\n\n" + dataset_notes(results)) if results else "",
    ]
    parts += [f"![{n}](figures/{r['figure'].name})" for n, r in results.items()]
    parts += [f"- `{n}` unavailable: {msg}" for n, msg in failures.items()]
    return "\n\n".join(p for p in parts if p)


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


def print_property_table(title: str, name: str, result: dict, caption: str = "") -> None:
    """The end-of-run terminal table of `acml finetune`: one row per method, mean ± std over seeds."""
    from rich.console import Console
    from rich.table import Table

    metrics = ["rmse", "mae"] if result.get("task", "regression") == "regression" else ["roc_auc", "pr_auc"]
    t = Table(title=title, caption=caption or None)
    rows = property_rows(name, result, metrics)
    t.add_column("method", no_wrap=True)
    for column in ["width"] + [m.upper() for m in metrics] + ["best epoch"]:
        t.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        epochs = [
            r["best_epoch"] for r in result.get("runs", []) if r["method"] == row["key"] and "best_epoch" in r
        ]
        best = fmt(float(np.mean(epochs)), 1) if epochs else ""
        t.add_row(row["method"], str(row["width"]), *[row[m] for m in metrics], best)
    console = Console()
    console.width = max(console.width, 104)  # one line per method even in an 80-column terminal or a log
    console.print(t)
    for row in paired_rows({name: result}):
        console.print(
            f"fine-tuned - scratch ({row['metric']}): {row['fine-tuned - scratch']}, better in "
            f"{row['fine-tuned better in']}, paired t-test p {row['paired t-test p']}: {row['verdict']}"
        )
