"""MLflow: the training run logger (rank 0), the `acml-gin` pyfunc embedding model, registration with
champion promotion, and resolving a model URI / run dir to a saved-model directory.

The pyfunc stores the saved model (state dict + config json) as an artifact and rebuilds it with the
installed package: no pickled code, so it loads in any fresh process that has acml-dist installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from acml_dist.log import get_logger

log = get_logger("register")

try:  # the pyfunc base class; the module stays importable (and light) for the CLI either way
    from mlflow.pyfunc import PythonModel as _PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    _PythonModel = object


def resolve_tracking_uri(tracking_cfg: Any = None, runs_root: str | Path = "runs") -> str:
    """cfg.tracking.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<runs_root>/mlflow.db."""
    uri = getattr(tracking_cfg, "tracking_uri", None) if tracking_cfg is not None else None
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = Path(runs_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: str(data)[:500]}


class RunLogger:
    """MLflow logging of one training run; a no-op unless enabled (rank 0 with tracking.enabled).

    Joins the active run or $MLFLOW_RUN_ID (the pipeline's nested stage run) when there is one."""

    def __init__(self, cfg: Any, enabled: bool, run_name: str) -> None:
        self.cfg, self.enabled, self.run_name = cfg, enabled, run_name
        self.run_id: Optional[str] = None
        self._own = False

    def start(self, params: dict[str, Any], texts: dict[str, str], files: list[Path]) -> None:
        if not self.enabled:
            return
        import mlflow
        from omegaconf import OmegaConf

        mlflow.set_tracking_uri(resolve_tracking_uri(self.cfg.tracking, self.cfg.runs_root))
        run = mlflow.active_run()
        if run is None:
            if not os.environ.get("MLFLOW_RUN_ID"):
                mlflow.set_experiment(self.cfg.tracking.experiment)
            run = mlflow.start_run(run_name=None if os.environ.get("MLFLOW_RUN_ID") else self.run_name)
            self._own = True
        self.run_id = run.info.run_id
        flat = _flatten(OmegaConf.to_container(self.cfg, resolve=True))
        flat.update({k: str(v) for k, v in params.items()})
        existing = mlflow.get_run(self.run_id).data.params
        # A resumed run may log the same params again; MLflow refuses changed values, so skip those.
        mlflow.log_params({k: v for k, v in flat.items() if k not in existing})
        for name, text in texts.items():
            mlflow.log_text(text, name)
        for path in files:
            mlflow.log_artifact(str(path), "manifests/" + path.parent.name)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, run_id=self.run_id)

    def finish(self, metrics: dict[str, Any], files: list[Path], model_dir: Path) -> None:
        if not self.enabled:
            return
        import mlflow

        final = {f"final_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        mlflow.log_metrics(final, run_id=self.run_id)
        for path in files:
            mlflow.log_artifact(str(path), run_id=self.run_id)
        mlflow.log_artifacts(str(model_dir), "saved_model", run_id=self.run_id)
        if self._own:
            mlflow.end_run()


class AcmlGinPyfunc(_PythonModel):
    """`predict(DataFrame with a "smiles" column) -> float32 array (N, emb_dim)` of GIN embeddings.

    SMILES are standardised and featurised by the same code as the shards; an unparseable SMILES gives a
    row of NaN."""

    # predict() is untyped (MLflow would validate inputs by hints), so there is nothing for MLflow's predict
    # wrapper to do: skip it and the warning it prints on every import (the flag MLflow's own models set)
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.load_model_dir(context.artifacts["model_dir"])

    def load_model_dir(self, model_dir: str | Path) -> None:
        """Load a saved-model dir (what `load_context` does with the logged artifact; used directly too)."""
        from acml_dist.models.io import load_model

        self.model = load_model(model_dir)
        self.schema = self.model.model_cfg.get("schema", "hu")

    def predict(self, context, model_input, params=None):
        return embed_smiles(self.model, list(model_input["smiles"]), self.schema)


def embed_smiles(model: Any, smiles: list[str], schema: str = "hu", batch_size: int = 256) -> Any:
    """GIN embeddings (N, emb_dim) float32 of SMILES strings, NaN rows where a SMILES does not parse."""
    import numpy as np
    import torch
    from torch_geometric.data import Batch

    from acml_dist.chem.featurize import mol_to_graph
    from acml_dist.chem.standardize import StandardResult, standardize
    from acml_dist.data.loader import graph_from_npz

    out = np.full((len(smiles), model.gin.emb_dim), np.nan, dtype=np.float32)
    graphs, rows = [], []
    for i, text in enumerate(smiles):
        std = standardize(str(text))
        if isinstance(std, StandardResult):
            graphs.append(graph_from_npz(mol_to_graph(std.mol, std.hint), schema))
            rows.append(i)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start : start + batch_size])
            out[rows[start : start + batch_size]] = model.encode(batch).float().numpy()
    return out


def register_model(model_dir: str | Path, metrics: dict[str, Any], tracking_cfg: Any) -> int:
    """Log `model_dir` as the `acml-gin` pyfunc, register a new version, tag it with `metrics`, and move the
    champion alias to it only when its champion_metric beats the current champion's. Returns the version."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from acml_dist.models.io import read_config

    if getattr(tracking_cfg, "tracking_uri", None):
        mlflow.set_tracking_uri(tracking_cfg.tracking_uri)
    name, alias, key = (
        tracking_cfg.registered_model,
        tracking_cfg.champion_alias,
        tracking_cfg.champion_metric,
    )
    emb_dim = int(read_config(model_dir)["model"].get("emb_dim", 300))
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "smiles")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, emb_dim))]),
    )
    numeric = {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    own = mlflow.active_run() is None
    if own:
        mlflow.set_experiment(tracking_cfg.experiment)
        mlflow.start_run(run_name=f"register-{name}")
    try:
        if own:
            mlflow.log_metrics(numeric)
        info = mlflow.pyfunc.log_model(
            name="acml_gin",
            python_model=AcmlGinPyfunc(),
            artifacts={"model_dir": str(model_dir)},
            signature=signature,
            # Shown on the model page and used by MLflow to check, before registering, that the logged
            # model loads and predicts.
            input_example=pd.DataFrame({"smiles": ["CCO", "c1ccccc1C(=O)O"]}),
            registered_model_name=name,
            # Explicit requirements: inferring them would load the model in a subprocess (slow, no gain).
            pip_requirements=["acml-dist", "torch", "torch-geometric", "rdkit", "numpy", "pandas"],
        )
    finally:
        if own:
            mlflow.end_run()
    version = int(info.registered_model_version)
    client = MlflowClient()
    for k, v in numeric.items():
        client.set_model_version_tag(name, str(version), k, str(v))
    new = numeric.get(key)
    try:
        champion = client.get_model_version_by_alias(name, alias)
        current = champion.tags.get(key)
        current_value = float(current) if current is not None else float("-inf")
    except mlflow.exceptions.MlflowException:
        champion, current_value = None, float("-inf")
    if new is not None and new > current_value:
        client.set_registered_model_alias(name, alias, str(version))
        log.info("%s v%d is the new @%s (%s %.4f > %.4f)", name, version, alias, key, new, current_value)
    else:
        log.info(
            "%s v%d registered; @%s stays on v%s (%s %s <= %s)",
            name,
            version,
            alias,
            getattr(champion, "version", None),
            key,
            new,
            current_value,
        )
    return version


def resolve_model_dir(uri_or_path: str | Path) -> Path:
    """A saved-model dir from: the dir itself, a run dir (its `model/`), or an MLflow `models:/` / `runs:/`
    URI of the acml-gin pyfunc (downloaded)."""
    path = Path(str(uri_or_path))
    for candidate in (path, path / "model"):
        if (candidate / "config.json").exists() and (candidate / "model.pt").exists():
            return candidate
    text = str(uri_or_path)
    if not text.startswith(("models:/", "runs:/")) and "://" not in text:
        raise FileNotFoundError(f"{text}: no saved model (config.json + model.pt) here or in {text}/model")
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
    found = sorted(p.parent for p in local.rglob("config.json") if (p.parent / "model.pt").exists())
    if not found:
        raise FileNotFoundError(f"{text}: downloaded to {local} but holds no acml saved model")
    return found[0]
