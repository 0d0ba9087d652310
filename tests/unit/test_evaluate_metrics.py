"""Retrieval, isomer and probe metrics on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from acml_dist.evaluate.isomers import isomer_groups, isomer_ranks, isomer_table
from acml_dist.evaluate.probes import descriptor_frame, linear_probe, probe_table
from acml_dist.evaluate.retrieval import pools, rank_metrics, retrieval_ranks, retrieval_table

pytestmark = pytest.mark.unit


def _brute_force_ranks(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    s = qn @ kn.T
    return 1 + (s > np.diag(s)[:, None] + 1e-6).sum(axis=1)


def test_whole_pool_ranks_match_brute_force_for_any_chunk():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(97, 8)), rng.normal(size=(97, 8))
    expected = _brute_force_ranks(q, k)
    for chunk in (1, 7, 1000):
        np.testing.assert_array_equal(retrieval_ranks(q, k, 0, chunk=chunk), expected)


def test_identical_embeddings_rank_first_and_reversed_rank_last():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 16))
    assert (retrieval_ranks(x, x, 10) == 1).all()
    # Keys that point the opposite way of their query: the partner is the least similar candidate.
    ranks = retrieval_ranks(x, -x, 0)
    assert (ranks == 50).all()


def test_pools_cover_every_query_once_with_constant_pool_size():
    parts = pools(130, 32, seed=3)
    queries = np.concatenate([q for _, q in parts])
    assert sorted(queries.tolist()) == list(range(130))
    for candidates, q in parts:
        assert len(candidates) == 32
        assert set(q.tolist()) <= set(candidates.tolist())


def test_pool_ranks_bounded_by_pool_size_and_random_embeddings_near_chance():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(1000, 32)), rng.normal(size=(1000, 32))
    ranks = retrieval_ranks(q, k, 128)
    assert ranks.max() <= 128
    metrics = rank_metrics(ranks, [1, 10])
    assert abs(metrics["mean_rank"] - 64.5) < 8  # uniform ranks over 1..128
    assert metrics["r@10"] < 0.2


def test_retrieval_table_both_directions_and_whole_split_once():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(60, 4))
    t = g + 0.01 * rng.normal(size=(60, 4))
    rows = retrieval_table(g, t, [16, 1000, 0])
    assert {(r["direction"], r["pool"]) for r in rows} == {
        ("graph->teacher", "16"),
        ("teacher->graph", "16"),
        ("graph->teacher", "all"),
        ("teacher->graph", "all"),
    }
    assert all(r["r@1"] > 0.9 for r in rows)


def test_isomer_groups_and_ranks_by_formula():
    formulas = ["C2H6O", "C2H6O", "CH4", "C3H8O", "C3H8O", "C3H8O"]
    assert [g.tolist() for g in isomer_groups(formulas)] == [[0, 1], [3, 4, 5]]
    rng = np.random.default_rng(4)
    g = rng.normal(size=(6, 8))
    ranks = isomer_ranks(g, g, formulas)
    assert ranks["size"].tolist() == [2, 2, 3, 3, 3]
    assert (ranks["graph->teacher"] == 1).all() and (ranks["teacher->graph"] == 1).all()


def test_isomer_table_reports_chance_level():
    formulas = ["A"] * 2 + ["B"] * 4
    rng = np.random.default_rng(5)
    g = rng.normal(size=(6, 8))
    rows = isomer_table(g, -g, formulas)  # anti-aligned: always ranked last
    all_fwd = next(r for r in rows if r["direction"] == "graph->teacher" and r["set_size"] == "all")
    assert all_fwd["top1"] == 0.0 and all_fwd["molecules"] == 6 and all_fwd["sets"] == 2
    assert all_fwd["chance_top1"] == pytest.approx((2 * 0.5 + 4 * 0.25) / 6)
    pair = next(r for r in rows if r["direction"] == "graph->teacher" and r["set_size"] == "2")
    assert pair["chance_mrr"] == pytest.approx(1.5 / 2)


def test_sparse_modality_isomers_beside_the_reference_on_the_same_molecules():
    """The comparison pools only the molecules that have the sparse modality, for both columns; sets of
    more than 10 and molecules without the modality are left out."""
    from acml_dist.evaluate.run import sparse_isomer_comparison

    rng = np.random.default_rng(0)
    n = 40
    formulas = ["A"] * 4 + ["B"] * 2 + ["C"] * 12 + [f"u{i}" for i in range(22)]
    g = rng.normal(size=(n, 8))
    has = np.zeros(n, bool)
    has[[0, 1, 2, 4, 5, *range(6, 18)]] = True  # 3 of A, both of B, all 12 of C (a set past 10)
    data = {"formula": formulas,
            "g:smiles": g, "t:smiles": -g, "mask:smiles": np.ones(n, bool),  # the reference: always last
            "g:nmr": g, "t:nmr": g, "mask:nmr": has}  # fmt: skip
    metrics: dict = {}
    text = sparse_isomer_comparison(data, ["smiles", "nmr"], metrics)
    assert metrics == {"isomer_nmr_sets2_10_top1": 1.0, "isomer_nmr_sets2_10_smiles_top1": 0.0}
    assert "| nmr | 5 |" in text  # A (3 with nmr) + B (2); C's 12 are past 10
    assert sparse_isomer_comparison({**data, "mask:nmr": np.ones(n, bool)}, ["smiles", "nmr"], {}) == ""
    # the reference named (the SMILES teacher), wherever it stands in the list
    data["g:fp"], data["t:fp"], data["mask:fp"] = g, g, np.ones(n, bool)
    named: dict = {}
    sparse_isomer_comparison(data, ["fp", "nmr", "smiles"], named, ref="smiles")
    assert named == metrics  # fp is dense: not compared
    unnamed: dict = {}  # no reference named: the first teacher every molecule has
    sparse_isomer_comparison(data, ["fp", "nmr", "smiles"], unnamed)
    assert unnamed == {"isomer_nmr_sets2_10_top1": 1.0, "isomer_nmr_sets2_10_fp_top1": 1.0}


def test_descriptors_and_functional_groups():
    frame = descriptor_frame(["CCO", "c1ccccc1O", "not a smiles"])
    assert frame.loc[0, "fg_alcohol"] == 1.0 and frame.loc[0, "fg_phenol"] == 0.0
    assert frame.loc[1, "fg_phenol"] == 1.0 and frame.loc[1, "aromatic_rings"] == 1.0
    assert frame.loc[0, "MW"] == pytest.approx(46.07, abs=0.01)
    assert np.isnan(frame.loc[2, "logP"])


def test_linear_probe_reads_linear_signal_and_not_noise():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 10))
    y = x @ rng.normal(size=10)
    assert linear_probe(x, y, "regression") > 0.95
    assert linear_probe(x, rng.normal(size=200), "regression") < 0.1
    assert linear_probe(x, (x[:, 0] > 0).astype(float), "classification") > 0.95
    assert np.isnan(linear_probe(x, np.r_[np.ones(1), np.zeros(199)], "classification"))


def test_probe_table_descriptor_embedding_beats_noise():
    smiles = ["C" * n + "O" * (n % 3) for n in range(1, 41)] + ["c1ccccc1" + "C" * n for n in range(40)]
    frame = descriptor_frame(smiles)
    informative = frame[["MW", "logP", "aromatic_rings"]].to_numpy()
    noise = np.random.default_rng(7).normal(size=(len(smiles), 3))
    table = probe_table({"informative": informative, "noise": noise}, smiles)
    mw = table.set_index("property").loc["MW"]
    assert mw["metric"] == "R2" and mw["informative"] > 0.99 and mw["noise"] < 0.2


def test_report_tables_show_mean_and_std_per_method():
    from acml_dist.evaluate import report
    from acml_dist.evaluate.properties import summarise

    runs = [
        {"seed": 0, "method": "acml_finetune", "rmse": 1.0, "mae": 0.5},
        {"seed": 1, "method": "acml_finetune", "rmse": 2.0, "mae": 0.7},
        {"seed": 0, "method": "scratch_finetune", "rmse": 3.0, "mae": 1.0},
    ]
    summary = summarise(runs)
    assert summary["acml_finetune"]["rmse"] == (1.5, 0.5)
    widths = {"acml_finetune": 64, "scratch_finetune": 300}
    result = {"esol": {"task": "regression", "summary": summary, "widths": widths}}
    text = report.property_section(result, [0, 1], "scaffold", report.shares("scaffold", [0.8, 0.1, 0.1]))
    assert "| esol | ACML GIN, fine-tuned | 64 | 1.500 ± 0.500 | 0.600 ± 0.100 |" in text
    assert "| esol | GIN from scratch (baseline) | 300 | 3.000 ± 0.000 |" in text
    assert "scaffold split 80/10/10" in text and "lower is better" in text
    assert report.shares("random", [0.7, 0.15, 0.15]) == "70/15/15"
