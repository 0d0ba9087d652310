"""One champion metric (issue 13): `trainer.register=true` tags the new version with the champion metric as
`acml evaluate` computes it on the same saved model and molecules (not the training-time held-out number of
the same name), records which metric decided (`champion_metric` tag), and the alias follows that number."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_local) -> Path:
    from acml_dist.config import load_config
    from acml_dist.data.featurize import featurize_corpus
    from acml_dist.teachers.cache import embed_dataset

    tmp = tmp_path_factory.mktemp("champion")
    moses = Path(importlib.util.find_spec("moses").submodule_search_locations[0]) / "dataset/data/test.csv.gz"
    with gzip.open(moses, "rt") as fh:
        smiles = fh.read().splitlines()[1:321]
    (tmp / "corpus.csv").write_text("smiles\n" + "\n".join(smiles) + "\n")
    root = tmp / "ds"
    featurize_corpus(load_config("featurize", [
        f"input={tmp / 'corpus.csv'}", f"output={root}", "data=file", "data.split=random",
        "data.split_fractions=[0.5,0.25,0.25]", "data.exclude=[]", "cluster.num_cpus=1",
    ]))  # fmt: skip
    embed_dataset(load_config("embed", [f"shards={root}", "teachers=fingerprint", "cluster.num_cpus=1"]))
    return root


def test_trainer_registers_with_evaluates_metric(shards, mlflow_store, tmp_path):
    from mlflow import MlflowClient

    from acml_dist.config import load_config
    from acml_dist.evaluate import evaluate
    from acml_dist.train import run

    common = [f"shards={shards}", "teachers=fingerprint", f"runs_root={tmp_path / 'runs'}"]
    train_cfg = load_config("train", [*common, "name=champ", "model=gin_small", "trainer.max_steps=6",
                                      "trainer.micro_batch=16", "trainer.register=true"])  # fmt: skip
    result = run(train_cfg)
    version = result["version"]
    tags = MlflowClient().get_model_version("acml-gin", str(version)).tags
    assert tags["champion_metric"] == "retrieval_top1"
    assert (Path(result["model_dir"]).parent / "train_result.json").exists()  # written by the trainer

    eval_cfg = load_config("evaluate", [
        *common, "name=champ", f"model={result['model_dir']}", "eval.isomers=false", "eval.probing=false",
        "eval.embedding_map=false", "eval.property_datasets=[]", "eval.attributions=0",
    ])  # fmt: skip
    evaluated = evaluate(eval_cfg)
    assert 0.0 < evaluated["retrieval_top1"] < 1.0  # a number that can disagree
    assert float(tags["retrieval_top1"]) == pytest.approx(evaluated["retrieval_top1"], abs=1e-12)
    # the training-time number (val split, loader batches) is still reported by training, not registered
    assert result["retrieval_batch"] > 0 and "retrieval_top1" in result
