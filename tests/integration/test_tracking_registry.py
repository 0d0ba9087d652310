"""The acml-gin pyfunc in a real MLflow store: register, champion moves only on a better metric, and a
fresh Python process loads models:/acml-gin@champion and embeds SMILES."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _saved_model(path, seed: int):
    import torch

    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model

    torch.manual_seed(seed)
    model = ACMLModel({"schema": "hu", "num_layers": 2, "emb_dim": 16, "proj_dim": 8}, {"morgan": 32})
    return save_model(model.eval(), path)


def test_register_champion_and_fresh_process_predict(mlflow_store, tmp_path):
    from mlflow import MlflowClient
    from omegaconf import OmegaConf

    from acml_dist.config import TrackingConfig
    from acml_dist.tracking import resolve_model_dir

    tcfg = OmegaConf.structured(TrackingConfig(experiment="reg-test"))
    from acml_dist.tracking import register_model

    v1 = register_model(_saved_model(tmp_path / "m1", 1), {"retrieval_top1": 0.5}, tcfg)
    v2 = register_model(_saved_model(tmp_path / "m2", 2), {"retrieval_top1": 0.4}, tcfg)  # worse: no move
    client = MlflowClient()
    assert int(client.get_model_version_by_alias("acml-gin", "champion").version) == v1
    assert client.get_model_version("acml-gin", str(v2)).tags["champion_metric"] == "retrieval_top1"
    v3 = register_model(_saved_model(tmp_path / "m3", 3), {"retrieval_top1": 0.7}, tcfg)
    assert (v1, v2, v3) == (1, 2, 3)
    assert int(client.get_model_version_by_alias("acml-gin", "champion").version) == 3
    assert (resolve_model_dir("models:/acml-gin@champion") / "model.safetensors").exists()
    assert resolve_model_dir(tmp_path / "m3") == tmp_path / "m3"
    # Weights + JSON config + the package's loader module: no pickle anywhere in the registered model.
    import mlflow
    import yaml

    local = Path(mlflow.artifacts.download_artifacts("models:/acml-gin@champion"))
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".bin"))], files
    names = {Path(f).name for f in files}
    assert {"model.safetensors", "config.json", "MLmodel"} <= names, files
    # every file is text (MLmodel, YAML, JSON, requirements) or the safetensors weights
    assert all(Path(f).suffix in ("", ".yaml", ".json", ".txt", ".safetensors") for f in files), files
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]
    assert list(flavor) == ["python_function"]
    assert flavor["python_function"]["loader_module"] == "acml_dist.embedder"
    # the model page carries an input example MLflow ran through the logged model before registering it
    from mlflow.models import Model

    example = Model.load("models:/acml-gin@champion").load_input_example()
    assert list(example.columns) == ["smiles"] and len(example) == 2

    smiles = ["CCO", "c1ccccc1O", "not a smiles", "CC(=O)Nc1ccc(O)cc1"]
    code = (
        "import json, sys, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/acml-gin@champion')\n"
        f"out = m.predict(pd.DataFrame({{'smiles': {smiles!r}}}))\n"
        "print(json.dumps(out.to_dict(orient='list'), allow_nan=False))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    rows, errors = out["embedding"], out["error"]
    assert len(rows) == 4 and [len(r) for r in (rows[0], rows[1], rows[3])] == [16, 16, 16]
    assert rows[2] is None and errors[2].startswith("invalid_smiles")  # a reason instead of an embedding
    assert errors[0] is None and errors[1] is None and errors[3] is None

    # Same numbers as the saved model used directly in this process (same featurisation as the shards).
    import numpy as np

    from acml_dist.models.io import load_model
    from acml_dist.tracking import embed_smiles

    local = embed_smiles(load_model(tmp_path / "m3"), smiles)
    np.testing.assert_allclose(np.array(rows[0], dtype=np.float32), local[0], rtol=1e-5, atol=1e-5)


def test_embed_smiles_from_a_saved_model_dir_and_a_smi_file(tmp_path):
    """`acml embed-smiles` takes the run dir `acml train` wrote (no registry needed) and any SMILES file
    the corpus reader takes: a gzipped .smi with a title line and a blank line here."""
    import gzip

    import numpy as np
    import pandas as pd
    from omegaconf import OmegaConf

    from acml_dist.models.io import load_model
    from acml_dist.serving import embed_smiles_file
    from acml_dist.tracking import embed_smiles

    _saved_model(tmp_path / "run" / "model", 4)
    with gzip.open(tmp_path / "in.smi.gz", "wt") as fh:
        fh.write("SMILES Name\nCCO ethanol\n\nc1ccccc1O phenol\nC1CC broken\n")
    cfg = OmegaConf.create(
        {
            "input": str(tmp_path / "in.smi.gz"),
            "output": str(tmp_path / "out.parquet"),
            "model": str(tmp_path / "run"),
            "smiles_column": "smiles",
            "batch_size": 2,
        }
    )
    assert embed_smiles_file(cfg) == {"rows": 3, "valid": 2, "dim": 16}
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["smiles"].tolist() == ["CCO", "c1ccccc1O", "C1CC"]
    assert pd.isna(out["error"].iloc[0]) and out["error"].iloc[2].startswith("invalid_smiles")
    emb = out[[f"emb_{i}" for i in range(16)]].to_numpy()
    direct = embed_smiles(load_model(tmp_path / "run" / "model"), ["CCO", "c1ccccc1O"])
    np.testing.assert_allclose(emb[:2], direct, rtol=1e-5, atol=1e-6)
    assert np.isnan(emb[2]).all()
