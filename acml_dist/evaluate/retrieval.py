"""Cross-modal retrieval: the rank of each query's true partner among the candidates of its pool.

Pools follow the authors' within-batch protocol generalised to any size: the molecules are permuted once
(seeded) and cut into consecutive pools of `pool_size`; the last, partial pool is topped up with earlier
molecules so every query competes against exactly `pool_size` candidates. Scores are computed one chunk of
queries at a time, so memory stays O(chunk x pool) even for the whole-split pool."""

from __future__ import annotations

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pools(n: int, pool_size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(candidates, queries) index pairs: each query's partner is in its pool's candidates.

    `pool_size <= 0` or `>= n` gives one pool with everything."""
    if pool_size <= 0 or pool_size >= n:
        idx = np.arange(n)
        return [(idx, idx)]
    order = np.random.default_rng(seed).permutation(n)
    out = []
    for start in range(0, n, pool_size):
        queries = order[start : start + pool_size]
        # Partial last pool: borrow candidates from the previous pool so the pool size stays constant.
        candidates = queries if len(queries) == pool_size else order[n - pool_size :]
        out.append((candidates, queries))
    return out


def retrieval_ranks(
    queries: np.ndarray,
    keys: np.ndarray,
    pool_size: int = 0,
    *,
    seed: int = 0,
    chunk: int = 1024,
    cosine: bool = True,
) -> np.ndarray:
    """1-based rank of `keys[i]` for query `queries[i]` within its pool (ties count in the query's favour)."""
    if len(queries) != len(keys):
        raise ValueError(f"queries ({len(queries)}) and keys ({len(keys)}) must be aligned")
    q = _normalise(queries) if cosine else np.asarray(queries, dtype=np.float32)
    k = _normalise(keys) if cosine else np.asarray(keys, dtype=np.float32)
    ranks = np.zeros(len(q), dtype=np.int64)
    for candidates, pool_queries in pools(len(q), pool_size, seed):
        cand = k[candidates]
        for start in range(0, len(pool_queries), chunk):
            rows = pool_queries[start : start + chunk]
            scores = q[rows] @ cand.T  # (chunk, pool)
            positive = np.einsum("ij,ij->i", q[rows], k[rows])[:, None]
            ranks[rows] = 1 + (scores > positive + 1e-6).sum(axis=1)
    return ranks


def rank_metrics(ranks: np.ndarray, topk: list[int] | tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """R@k, MRR, mean and median rank of 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {}
    out = {f"r@{k}": float((ranks <= k).mean()) for k in topk}
    out["mrr"] = float((1.0 / ranks).mean())
    out["mean_rank"] = float(ranks.mean())
    out["median_rank"] = float(np.median(ranks))
    return out


def retrieval_table(
    graph: np.ndarray,
    teacher: np.ndarray,
    pool_sizes: list[int] | tuple[int, ...],
    topk: list[int] | tuple[int, ...] = (1, 5, 10),
    *,
    seed: int = 0,
    chunk: int = 1024,
) -> list[dict]:
    """Rows {direction, pool, n, r@k..., mrr, mean_rank, median_rank, chance_r@1} for both directions."""
    n = len(graph)
    rows = []
    seen: set[int] = set()
    for pool in pool_sizes:
        effective = n if pool <= 0 or pool >= n else pool
        if effective in seen or n < 2:
            continue  # a pool larger than the split is the whole split: report it once
        seen.add(effective)
        for direction, q, k in (("graph->teacher", graph, teacher), ("teacher->graph", teacher, graph)):
            ranks = retrieval_ranks(q, k, effective, seed=seed, chunk=chunk)
            label = "all" if effective == n else str(effective)
            row = {"direction": direction, "pool": label, "pool_size": effective, "n": n}
            row.update(rank_metrics(ranks, topk))
            row["chance_r@1"] = 1.0 / effective
            rows.append(row)
    return rows


def recall_curve(ranks: np.ndarray, max_k: int) -> np.ndarray:
    """Recall@k for k = 1..max_k (for plots)."""
    ranks = np.asarray(ranks)
    return np.array([(ranks <= k).mean() for k in range(1, max_k + 1)])


def headline_top1(rows: list[dict]) -> dict[str, float]:
    """The registry's headline numbers from `retrieval_table` rows (graph -> teacher, R@1):
    `retrieval_top1` (the first pool size: the authors' within-batch protocol at 128, the champion metric)
    and `retrieval_top1_pool<N|all>` per pool."""
    g2t = [r for r in rows if r["direction"] == "graph->teacher"]
    if not g2t:
        return {}
    out = {"retrieval_top1": g2t[0]["r@1"]}
    out.update({f"retrieval_top1_pool{r['pool']}": r["r@1"] for r in g2t})
    return out
