"""Registry consumers: embed a SMILES file with a trained model, and serve a model over REST."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from acml_dist.errors import DataError
from acml_dist.log import get_logger

log = get_logger("serve")


def load_embedder(model: str):
    """An object with `predict(DataFrame[smiles]) -> (N, dim) array` from a registry URI, an MLflow model
    dir, or a saved-model dir / run dir as `acml train` writes it (loaded directly, no MLflow round trip)."""
    import mlflow

    from acml_dist.tracking import AcmlGinPyfunc, resolve_model_dir

    if "://" in model or model.startswith(("models:/", "runs:/")) or Path(model, "MLmodel").exists():
        return mlflow.pyfunc.load_model(model)
    pyfunc = AcmlGinPyfunc()
    pyfunc.load_model_dir(resolve_model_dir(model))  # FileNotFoundError names the path when nothing is there
    return _DirectEmbedder(pyfunc)


class _DirectEmbedder:
    def __init__(self, pyfunc) -> None:
        self.pyfunc = pyfunc

    def predict(self, frame):
        return self.pyfunc.predict(None, frame)


def read_smiles_table(path: str, smiles_column: str):
    """A DataFrame with the SMILES column: CSV / TSV / Parquet (gzipped CSV too), or a .smi file read by
    the corpus reader (title line, ids and gzip handled the same way; blank lines skipped)."""
    import pandas as pd

    from acml_dist.data.sources import detect_format, iter_smiles_file

    if ".parquet" in Path(path).suffixes:
        return pd.read_parquet(path)
    fmt = detect_format(path)  # from the extension; an unknown one is a one-line error
    if fmt in ("smi", "pubchem_smiles"):
        smiles = [text for _, text, _ in iter_smiles_file(path, fmt, smiles_column) if text]
        return pd.DataFrame({smiles_column: smiles})
    if fmt == "sdf":
        raise DataError(f"{path}: embed-smiles reads SMILES tables (CSV, TSV, Parquet, .smi), not SDF")
    return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")


def embed_smiles_file(cfg: DictConfig) -> dict:
    """`acml embed-smiles input=FILE output=FILE.parquet model=URI`: one row per input row, in order."""
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    table = read_smiles_table(cfg.input, cfg.smiles_column)
    if cfg.smiles_column not in table.columns:
        raise DataError(f"{cfg.input}: no column {cfg.smiles_column!r} (columns: {list(table.columns)})")
    model = load_embedder(cfg.model)
    smiles = table[cfg.smiles_column].astype(str).tolist()
    parts = []
    for start in tqdm(range(0, len(smiles), cfg.batch_size), desc="embed-smiles", unit="batch"):
        batch = pd.DataFrame({"smiles": smiles[start : start + cfg.batch_size]})
        parts.append(np.asarray(model.predict(batch), dtype=np.float32))
    emb = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    out = pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(emb.shape[1])])
    out.insert(0, "smiles", smiles)
    Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(cfg.output, index=False)
    emb_cols = [c for c in out.columns if c.startswith("emb_")]
    valid = int(np.isfinite(out[emb_cols].to_numpy()).all(axis=1).sum()) if emb_cols else 0
    log.info("embedded %d SMILES (%d valid, dim %d) -> %s", len(out), valid, len(emb_cols), cfg.output)
    print(
        f"embed-smiles: {len(out)} rows, {valid} embedded, {len(out) - valid} invalid, dim {len(emb_cols)}"
        f" -> {cfg.output}"
    )
    return {"rows": len(out), "valid": valid, "dim": len(emb_cols)}


def serve_model(cfg: DictConfig) -> dict:
    """`acml serve model=models:/acml-gin@champion`: `mlflow models serve` in this environment."""
    host = os.environ.get("ACML_SERVE_HOST", "127.0.0.1")
    port = os.environ.get("ACML_SERVE_PORT", "5001")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        cfg.model,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        port,
    ]
    log.info("serving %s on http://%s:%s/invocations", cfg.model, host, port)
    return {"ok": subprocess.call(cmd) == 0}
