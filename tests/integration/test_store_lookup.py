"""A job looks an MLflow URI up in its own store: `acml embed-smiles model=models:/acml-gin@champion` run
where the stages keep their store (runs/mlflow.db, no $MLFLOW_TRACKING_URI) finds the model the stages
registered there, not MLflow's default store; a URI the store lacks is one line naming the store."""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _forget_the_store():
    """The commands point MLflow at this test's store: leave no such global behind for later tests."""
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


def test_embed_smiles_finds_the_registry_of_the_stages_store(tmp_path, monkeypatch, capsys):
    import mlflow
    import torch
    from omegaconf import OmegaConf

    from acml_dist.cli import main
    from acml_dist.config import TrackingConfig
    from acml_dist.context import use_tracking_store
    from acml_dist.errors import EXIT_INPUT_ERROR
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model
    from acml_dist.tracking import register_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stages_store = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"  # what every stage uses by default
    use_tracking_store(stages_store)
    torch.manual_seed(0)
    model = ACMLModel({"schema": "hu", "num_layers": 2, "emb_dim": 16, "proj_dim": 8}, {"morgan": 32})
    register_model(save_model(model.eval(), tmp_path / "m"), {"retrieval_top1": 0.5},
                   OmegaConf.structured(TrackingConfig(experiment="lookup")))  # fmt: skip
    mlflow.set_tracking_uri(None)  # a new process: MLflow's own default, not the stages' store
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "not a smiles"]}).to_csv("in.csv", index=False)

    # the default model: models:/acml-gin@champion
    assert main(["embed-smiles", "input=in.csv", "output=out.parquet"]) == 0
    out = pd.read_parquet("out.parquet")
    assert out["error"].isna().tolist() == [True, True, False] and "emb_15" in out.columns

    missing = "model=models:/no-such-model@champion"
    code = main(["embed-smiles", "input=in.csv", "output=none.parquet", missing])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR and "Traceback" not in err
    assert "models:/no-such-model@champion: not fetched from the MLflow store" in err
    assert "runs/mlflow.db" in err


def test_a_registry_teacher_is_embedded_from_the_stages_store(tmp_path, monkeypatch):
    """`acml pretrain-teacher` registers into runs/mlflow.db by default; `acml embed` with that teacher's
    `models:/` path then fetches it from there in its workers, with no $MLFLOW_TRACKING_URI to point the
    way."""
    import mlflow
    from helpers import write_dataset

    from acml_dist.config import load_config
    from acml_dist.config.teachers import TeacherConfig
    from acml_dist.context import use_tracking_store
    from acml_dist.data.datasets import moses_smiles
    from acml_dist.teachers import load_teacher
    from acml_dist.teachers.cache import embed_dataset
    from acml_dist.teachers.registry import log_teacher

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    use_tracking_store(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    registered = load_teacher("morgan", TeacherConfig(kind="fingerprint", params={"n_bits": 64}))
    version = log_teacher(registered)
    mlflow.set_tracking_uri(None)
    smiles = moses_smiles(24)
    write_dataset(
        tmp_path / "shards" / "d", {"train": smiles[:16], "valid": smiles[16:20], "test": smiles[20:]}
    )
    path = f"teachers.morgan.path=models:/acml-teacher-morgan/{version}"
    overrides = ["shards=shards/d", "teachers=fingerprint", path, "cluster.address=processes",
                 "cluster.embed_actors=1"]  # fmt: skip
    cache = embed_dataset(load_config("embed", overrides))["teachers"]["morgan"]
    assert cache["dim"] == 64 and cache["weights_hash"] == registered.weights_hash()  # the registered one
    assert cache["embedded_now"] == 24
