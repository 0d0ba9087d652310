"""`acml evaluate` end to end: featurised shards and a fingerprint embedding cache made here (real Ray), a
tiny saved model, every section of the report, the copy into a repository-style EVALUATION.md, MLflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import featurise

from acml_dist.data.datasets import moses_smiles

pytestmark = pytest.mark.integration

# Explicit isomer sets (same formula) so the isomer section has something to rank.
ISOMERS = [
    "CCO",
    "COC",
    "CCCO",
    "CC(C)O",
    "CCOC",
    "c1ccccc1CO",
    "Cc1ccccc1O",
    "COc1ccccc1",
    "CC(=O)O",
    "COC=O",
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, ray_local):
    import torch

    from acml_dist.config import load_config
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model

    tmp = tmp_path_factory.mktemp("evaluate")
    shards = featurise(
        tmp / "shards" / "tiny",
        moses_smiles(230) + ISOMERS,
        "data.split_fractions=[0.2,0.1,0.7]",
        "data.samples_per_shard=64",
    )
    torch.manual_seed(0)
    model = ACMLModel({"schema": "hu", "num_layers": 2, "emb_dim": 16, "proj_dim": 16}, {"morgan": 2048})
    model_dir = save_model(model, tmp / "model")
    from acml_dist.evaluate import evaluate

    out = tmp / "out"
    cfg = load_config(
        "evaluate",
        [
            f"model={model_dir}",
            f"shards={shards}",
            "teachers=fingerprint",
            f"output={out}",
            f"runs_root={tmp / 'runs'}",
            f"tracking.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
            "eval.retrieval_pools=[16,128,0]",
            "eval.property_datasets=[no_such_dataset]",
            "eval.attributions=2",
            "eval.probe_molecules=150",
            f"eval.report={tmp / 'repo' / 'EVALUATION.md'}",
            "name=tiny",
        ],
    )
    return evaluate(cfg), out, tmp


def test_evaluate_metrics(evaluated):
    metrics, _, _ = evaluated
    n = metrics["eval_molecules"]
    assert 100 < n <= 240
    assert 0.0 <= metrics["retrieval_top1"] <= 1.0
    assert metrics["retrieval_top1"] == metrics["retrieval_top1_pool16"]
    assert metrics["retrieval_morgan_graph2teacher_pool16_mean_rank"] <= 16
    assert metrics["retrieval_morgan_teacher2graph_poolall_mean_rank"] <= n
    assert 0.0 <= metrics["isomer_morgan_graph2teacher_top1"] <= 1.0
    assert 0.0 < metrics["isomer_morgan_graph2teacher_chance_top1"] <= 0.5
    # The Morgan fingerprint itself must linearly reveal functional groups far better than chance (0.5).
    groups = [metrics[f"probe_{g}_teacher_morgan"] for g in ("alcohol", "ester", "amide", "ether")]
    assert np.mean(groups) > 0.8
    assert "probe_logP_ACML_GIN" in metrics and "probe_logP_random-init_GIN" in metrics


def test_evaluate_report_figures_and_repository_copy(evaluated):
    _, out, tmp = evaluated
    text = (out / "report.md").read_text()
    for heading in ("Cross-modal retrieval", "Isomer discrimination", "linear probes", "Embedding map"):
        assert heading in text
    assert "`no_such_dataset` unavailable" in text
    for fig in ("retrieval_recall", "isomer_top1", "probes", "map", "attribution_0"):
        assert (out / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    copy = (tmp / "repo" / "EVALUATION.md").read_text()
    assert "](docs/figures/evaluation/probes.png)" in copy
    assert (tmp / "repo" / "docs" / "figures" / "evaluation" / "probes.png").exists()
    saved = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(saved["retrieval_top1"])


def test_evaluate_logged_to_mlflow(evaluated):
    import mlflow

    _, _, tmp = evaluated
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["acml"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1 and "retrieval_top1" in runs[0].data.metrics
