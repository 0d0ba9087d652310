"""`acml register-release`: the shipped encoder lands in a real MLflow store as acml-gin-release@champion and
serves embeddings through the registry; registering it again leaves the champion where it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _register(tmp_path: Path) -> str:
    cmd = [sys.executable, "-m", "acml_dist.cli", "register-release", f"runs_root={tmp_path / 'runs'}"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_release_registers_and_serves(tmp_path: Path) -> None:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    out = _register(tmp_path)  # run from another directory: the checkout's release/ is found
    assert "acml-gin-release v1" in out
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model("models:/acml-gin-release@champion")
        frame = model.predict(pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "C1CC"]}))
        first, second = (np.asarray(e, dtype=np.float32) for e in frame["embedding"][:2])
        assert first.shape == (300,) and np.isfinite(first).all()
        assert not np.allclose(first, second)
        assert frame["embedding"][2] is None and frame["error"][2]
        _register(tmp_path)
        champion = MlflowClient().get_model_version_by_alias("acml-gin-release", "champion")
        assert str(champion.version) == "1"  # same metric: not better, the alias stays
    finally:
        mlflow.set_tracking_uri(None)
