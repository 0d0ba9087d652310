"""Isomer discrimination: can the graph embedding tell a molecule's teacher embedding from its isomers'?

Test molecules are grouped by molecular formula; inside each group with two or more members, each graph
embedding ranks its own teacher embedding among the group's (and the reverse). Chance level for a set of
size n is 1/n for top-1 and H_n/n for MRR."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from acml_dist.evaluate.retrieval import _normalise

# Isomer-set size buckets for the tables and the plot (inclusive bounds).
SIZE_BUCKETS: list[tuple[int, int]] = [(2, 2), (3, 5), (6, 10), (11, 50), (51, 10**9)]


def isomer_groups(formulas: list[str]) -> list[np.ndarray]:
    """Index arrays of molecules sharing a formula, groups of size >= 2 only."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(formulas):
        if f:
            groups[f].append(i)
    return [np.asarray(g) for g in groups.values() if len(g) >= 2]


def isomer_ranks(graph: np.ndarray, teacher: np.ndarray, formulas: list[str]) -> dict[str, np.ndarray]:
    """Per-molecule ranks among its isomers, both directions, and each molecule's isomer-set size."""
    g_all, t_all = _normalise(graph), _normalise(teacher)
    fwd, rev, sizes = [], [], []
    for idx in isomer_groups(formulas):
        scores = g_all[idx] @ t_all[idx].T  # (n, n); diagonal = true pairs
        diag = np.diag(scores)[:, None]
        fwd.append(1 + (scores > diag + 1e-6).sum(axis=1))
        rev.append(1 + (scores.T > diag + 1e-6).sum(axis=1))
        sizes.append(np.full(len(idx), len(idx)))
    if not sizes:
        empty = np.zeros(0, dtype=np.int64)
        return {"graph->teacher": empty, "teacher->graph": empty, "size": empty}
    return {
        "graph->teacher": np.concatenate(fwd),
        "teacher->graph": np.concatenate(rev),
        "size": np.concatenate(sizes),
    }


def top1_in_sets(
    graph: np.ndarray, teacher: np.ndarray, formulas: list[str], lo: int = 2, hi: int = 10
) -> dict[str, float]:
    """graph -> teacher top-1 over the molecules in isomer sets of `lo`..`hi` members: {"top1",
    "molecules", "chance_top1"} (top1 and chance NaN when there is no such set)."""
    ranks = isomer_ranks(graph, teacher, formulas)
    sel = (ranks["size"] >= lo) & (ranks["size"] <= hi)
    if not sel.any():
        return {"top1": float("nan"), "molecules": 0, "chance_top1": float("nan")}
    top1 = float((ranks["graph->teacher"][sel] == 1).mean())
    return {"top1": top1, "molecules": int(sel.sum()), "chance_top1": _chance(ranks["size"][sel])[0]}


def _chance(sizes: np.ndarray) -> tuple[float, float]:
    harmonic = np.array([np.sum(1.0 / np.arange(1, n + 1)) for n in sizes])
    return float(np.mean(1.0 / sizes)), float(np.mean(harmonic / sizes))


def _bucket_label(lo: int, hi: int) -> str:
    if lo == hi:
        return str(lo)
    return f"{lo}-{hi}" if hi < 10**9 else f">={lo}"


def isomer_table(graph: np.ndarray, teacher: np.ndarray, formulas: list[str]) -> list[dict]:
    """Rows {direction, sizes, molecules, sets, top1, mrr, chance_top1, chance_mrr} per size bucket + all."""
    ranks = isomer_ranks(graph, teacher, formulas)
    sizes = ranks["size"]
    rows = []
    buckets = [(lo, hi, _bucket_label(lo, hi)) for lo, hi in SIZE_BUCKETS] + [(2, 10**9, "all")]
    for direction in ("graph->teacher", "teacher->graph"):
        r = ranks[direction]
        for lo, hi, label in buckets:
            sel = (sizes >= lo) & (sizes <= hi)
            if not sel.any():
                continue
            chance_top1, chance_mrr = _chance(sizes[sel])
            rows.append(
                {
                    "direction": direction,
                    "set_size": label,
                    "molecules": int(sel.sum()),
                    "sets": int(np.sum(1.0 / sizes[sel]).round()),
                    "top1": float((r[sel] == 1).mean()),
                    "mrr": float((1.0 / r[sel]).mean()),
                    "chance_top1": chance_top1,
                    "chance_mrr": chance_mrr,
                }
            )
    return rows
