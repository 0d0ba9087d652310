"""Registry consumers: embed a SMILES file with a trained model, and serve a model over REST."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from acml_dist.log import get_logger

log = get_logger("serve")


def load_embedder(model: str):
    """A `GinEmbedder` (`embed(values) -> (array, errors)`, `predict(DataFrame)`) from a registry URI, an
    MLflow model dir, or a saved-model dir / run dir as `acml train` writes it. Registry models are
    downloaded and checked (weights + config only: UnsafeFileError for a pickled model), never unpickled."""
    from acml_dist.embedder import GinEmbedder
    from acml_dist.tracking import resolve_model_dir

    return GinEmbedder(resolve_model_dir(model))  # FileNotFoundError names the path when nothing is there


def embed_smiles_file(cfg: DictConfig) -> dict:
    """`acml embed-smiles input=FILE output=FILE.parquet model=URI`: one row per input row, in order, with
    the input's columns, `error` and `emb_0..`."""
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from acml_dist.data.tables import read_input_table
    from acml_dist.tracking import use_store_for

    table, column = read_input_table(cfg.input, cfg.smiles_column, "emb_")
    use_store_for(cfg, cfg.model)
    model = load_embedder(cfg.model)
    # a missing cell stays missing (its row gets the reason "missing"), not the string "nan"
    smiles = [None if pd.isna(v) else str(v) for v in table[column].tolist()]
    parts, errors = [], []
    for start in tqdm(range(0, len(smiles), cfg.batch_size), desc="embed-smiles", unit="batch"):
        emb, errs = model.embed(smiles[start : start + cfg.batch_size])
        parts.append(emb)
        errors += errs
    dim = model.model.gin.emb_dim
    emb = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    # The input's columns (ids, labels: what a user joins on) as read, then why a row has no embedding
    # (None when it has one), then the embedding.
    out = table.reset_index(drop=True).astype({column: object})
    out[column] = smiles
    out["error"] = errors
    out = pd.concat([out, pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(emb.shape[1])])], axis=1)
    Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(cfg.output, index=False)
    emb_cols = [c for c in out.columns if c.startswith("emb_")]
    valid = sum(e is None for e in errors)
    log.info("embedded %d SMILES (%d valid, dim %d) -> %s", len(out), valid, len(emb_cols), cfg.output)
    print(
        f"embed-smiles: {len(out)} rows, {valid} embedded, {len(out) - valid} invalid, dim {len(emb_cols)}"
        f" -> {cfg.output}"
    )
    return {"rows": len(out), "valid": valid, "dim": len(emb_cols)}


def serve_model(cfg: DictConfig) -> dict:
    """`acml serve model=models:/acml-gin@champion [host=...] [port=...]`: `mlflow models serve` in this
    environment, on 127.0.0.1 unless host= (or $ACML_SERVE_HOST) says otherwise. The model is resolved
    and checked first (a pickled model is refused) and the checked local copy is what gets served; a
    saved-model / run dir is wrapped as an MLflow model on the fly."""
    import tempfile

    from acml_dist.tracking import use_store_for

    host, port = str(cfg.host), str(cfg.port)
    use_store_for(cfg, cfg.model)
    with tempfile.TemporaryDirectory(prefix="acml-serve-") as tmp:
        local = servable_model_dir(cfg.model, Path(tmp))
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(local)]
        cmd += ["--env-manager", "local", "--host", host, "--port", port]
        # MLflow starts `uvicorn` by name: the environment's own bin dir first, so it is found without an
        # activated venv (and is this environment's uvicorn, not another on PATH).
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
        log.info("serving %s on http://%s:%s/invocations", cfg.model, host, port)
        return {"ok": subprocess.call(cmd, env=env) == 0}


def servable_model_dir(model: str, tmp: Path) -> Path:
    """A local, checked MLflow model dir for `model` (registry URI, MLflow model dir, saved-model dir)."""
    import mlflow

    from acml_dist.embedder import LOADER_MODULE, check_model_files
    from acml_dist.models.io import is_model_dir
    from acml_dist.tracking import download, is_mlflow_uri

    path = Path(model)
    saved = next((p for p in (path, path / "model") if is_model_dir(p)), None)
    if saved is not None:
        out = tmp / "mlflow_model"
        mlflow.pyfunc.save_model(str(out), loader_module=LOADER_MODULE, data_path=str(saved))
        return out
    if (path / "MLmodel").is_file():
        local = path
    elif is_mlflow_uri(model):
        local = download(model, dst_path=str(tmp))
    else:
        raise FileNotFoundError(f"{model}: no MLflow model or saved model here")
    check_model_files(local, model)
    return local
