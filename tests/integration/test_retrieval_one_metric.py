"""One retrieval metric (issue 13): training-time held-out top-1 (`training.metrics.pooled_top1` over
`present_projections` of loader batches, pools of 128) and evaluation-time R@1 (`evaluate.run.collect` +
`retrieval_table`) agree on the same model and molecules. The model is trained a little first, so top-1 is
neither 0 nor 1."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_training_and_evaluation_retrieval_agree(ray_local, tmp_path):
    import torch
    from omegaconf import OmegaConf

    from acml_dist.config import load_config
    from acml_dist.data.featurize import featurize_corpus
    from acml_dist.data.loader import make_loader
    from acml_dist.evaluate.retrieval import retrieval_table
    from acml_dist.evaluate.run import collect
    from acml_dist.losses import ContrastiveLoss
    from acml_dist.models import ACMLModel
    from acml_dist.teachers.cache import embed_dataset
    from acml_dist.training.metrics import pooled_top1, present_projections

    moses = Path(importlib.util.find_spec("moses").submodule_search_locations[0]) / "dataset/data/test.csv.gz"
    with gzip.open(moses, "rt") as fh:
        smiles = fh.read().splitlines()[1:161]
    (tmp_path / "corpus.csv").write_text("smiles\n" + "\n".join(smiles) + "\n")
    root = tmp_path / "ds"
    featurize_corpus(load_config("featurize", [
        f"input={tmp_path / 'corpus.csv'}", f"output={root}", "data=file", "data.split=random",
        "data.split_fractions=[0.5,0.0,0.5]", "data.exclude=[]", "cluster.num_cpus=1",
    ]))  # fmt: skip
    embed_dataset(load_config("embed", [f"shards={root}", "teachers=fingerprint", "cluster.num_cpus=1"]))

    torch.manual_seed(0)
    model = ACMLModel({"schema": "hu", "num_layers": 2, "emb_dim": 32, "proj_dim": 16}, {"morgan": 2048})
    loss_fn, opt = ContrastiveLoss("clip", gather=False), torch.optim.AdamW(model.parameters(), lr=3e-3)
    train = make_loader(str(root), "train", 32, schema="hu", teachers=("morgan",), shuffle=True)
    for _ in range(3):
        for batch in train:
            g, t, scale = model(batch.graph, {"morgan": batch.embeddings["morgan"].float()})["morgan"]
            opt.zero_grad()
            loss_fn(g, t, None, scale).backward()
            opt.step()
    model.eval()

    test = make_loader(str(root), "test", 10_000, schema="hu", teachers=("morgan",))
    batches = list(test)
    assert len(batches) == 1  # under 128 molecules: training's pool of 128 is evaluate's "all" pool
    hits, n = pooled_top1([present_projections(model, batches[0], torch.float32)["morgan"]])
    train_time = hits / n

    ecfg = OmegaConf.create({"split": "test", "max_molecules": 0})
    data = collect(model, root, ecfg, ["morgan"])
    rows = retrieval_table(data["g:morgan"], data["t:morgan"], [0], [1])
    eval_time = next(r["r@1"] for r in rows if r["direction"] == "graph->teacher")
    assert len(data["smiles"]) == n
    assert 0.0 < train_time < 1.0, train_time  # a metric that can disagree
    assert train_time == pytest.approx(eval_time, abs=1e-9)
