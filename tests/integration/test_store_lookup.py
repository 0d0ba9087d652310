"""A job looks an MLflow URI up in its own store: `acml embed-smiles model=models:/acml-gin@champion` run
where the stages keep their store (runs/mlflow.db, no $MLFLOW_TRACKING_URI) finds the model the stages
registered there, not MLflow's default store; a URI the store lacks is one line naming the store."""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.integration


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
    assert "models:/no-such-model@champion: not found in the MLflow store" in err and "runs/mlflow.db" in err
