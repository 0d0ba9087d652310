"""MLflow: the training run logger (rank 0), the `acml-gin` pyfunc embedding model, registration with
champion promotion, and resolving a model URI / run dir to a saved-model directory.

The registered model is a `loader_module` pyfunc (`acml_dist.embedder`): the saved model (safetensors +
config json) as its data, rebuilt by the installed package. Nothing is pickled, so it loads in any fresh
process that has acml-dist installed, and `resolve_model_dir` refuses a registered model that is anything
else (a `python_model.pkl` would run code when loaded).
"""

from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

from acml_dist.context import RunContext, mlflow_session
from acml_dist.log import get_logger
from acml_dist.redact import redact, redact_value

log = get_logger("register")


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: redact_value(prefix[:-1], data)[:500]}


def _first_line(exc: BaseException) -> str:
    """An exception in one line for a warning, credentials masked."""
    text = str(exc)
    return redact(text.splitlines()[0] if text else type(exc).__name__)


class RunLogger:
    """MLflow logging of one training run; a no-op unless enabled (rank 0 with tracking.enabled).

    Its run is the context's `mlflow_run`: the active run, $MLFLOW_RUN_ID (the pipeline's nested stage run)
    or its own, held from `start` to `finish`."""

    def __init__(self, cfg: Any, ctx: RunContext, enabled: bool, run_name: str) -> None:
        self.cfg, self.ctx, self.enabled, self.run_name = cfg, ctx, enabled, run_name
        self.run_id: Optional[str] = None
        self._session = ExitStack()
        # Once the tracking server fails, training goes on: metrics go to this file (one warning), and
        # `finish` pushes them if the server is back, or says where they are.
        self.offline_file = ctx.run_dir / "metrics_offline.jsonl"
        self.offline = False

    def start(self, params: dict[str, Any], texts: dict[str, str], files: list[Path]) -> None:
        if not self.enabled:
            return
        import mlflow
        from omegaconf import OmegaConf

        session = self._session.enter_context(self.ctx.mlflow_run(self.run_name))
        if session is None:  # tracking.enabled=false
            self.enabled = False
            return
        self.run_id = session.run_id
        flat = _flatten(OmegaConf.to_container(self.cfg, resolve=True))
        flat.update({k: redact_value(k, v) for k, v in params.items()})
        existing = mlflow.get_run(self.run_id).data.params
        # A resumed run may log the same params again; MLflow refuses changed values, so skip those.
        mlflow.log_params({k: v for k, v in flat.items() if k not in existing})
        for name, text in texts.items():
            mlflow.log_text(redact(text), name)
        for path in files:
            mlflow.log_artifact(str(path), "manifests/" + path.parent.name)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        if not self.offline:
            import mlflow

            try:
                mlflow.log_metrics(values, step=step, run_id=self.run_id)
                return
            except Exception as exc:  # noqa: BLE001 - any tracking failure must not stop training
                self.offline = True
                log.warning(
                    "MLflow tracking failed at step %d (%s); training goes on, metrics are kept in %s "
                    "and pushed when the run finishes if the server is back",
                    step,
                    _first_line(exc),
                    self.offline_file,
                )
        self.offline_file.parent.mkdir(parents=True, exist_ok=True)
        with self.offline_file.open("a") as fh:
            fh.write(json.dumps({"step": step, "metrics": values}) + "\n")

    def _push_offline(self) -> bool:
        """Send the metrics kept while the server was down; False (and one warning) if it still fails."""
        import mlflow
        from mlflow.entities import Metric

        rows = [json.loads(line) for line in self.offline_file.read_text().splitlines() if line]
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, r["step"]) for r in rows for k, v in r["metrics"].items()]
        try:
            client = mlflow.MlflowClient()
            for i in range(0, len(batch), 1000):  # MLflow's log_batch limit
                client.log_batch(self.run_id, metrics=batch[i : i + 1000])
        except Exception as exc:  # noqa: BLE001
            log.warning(
                "MLflow is still unreachable (%s): the run's metrics stay in %s, the model in the run folder",
                _first_line(exc),
                self.offline_file,
            )
            return False
        log.warning("MLflow is back: %d metric values kept during the outage were pushed", len(batch))
        self.offline = False
        return True

    def finish(self, metrics: dict[str, Any], files: list[Path], model_dir: Path) -> None:
        if not self.enabled:
            return
        import mlflow

        if self.offline and not self._push_offline():
            return
        final = {f"final_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        mlflow.log_metrics(final, run_id=self.run_id)
        self._log_lists(metrics)
        for path in files:
            mlflow.log_artifact(str(path), run_id=self.run_id)
        mlflow.log_artifacts(str(model_dir), "saved_model", run_id=self.run_id)
        self._session.close()

    def _log_lists(self, metrics: dict[str, Any]) -> None:
        """List values of the final metrics (the skipped shard names) as params, "<count>: a, b, ..." cut at
        500 characters (train_result.json has them all); where a resumed run logged the param with another
        value (MLflow keeps params fixed), as a tag of the same name."""
        from mlflow import MlflowClient

        client = MlflowClient()
        existing = client.get_run(self.run_id).data.params
        for key, value in metrics.items():
            if isinstance(value, list):
                text = f"{len(value)}: {', '.join(map(str, value))}"[:500] if value else "0"
                if key not in existing:
                    client.log_param(self.run_id, key, text)
                elif existing[key] != text:
                    client.set_tag(self.run_id, key, text)


def embed_smiles(
    model: Any, smiles: list[str], schema: str = "hu", std_cfg: Any = None, batch_size: int = 256
) -> Any:
    """GIN embeddings (N, emb_dim) float32 of SMILES strings, NaN rows where a SMILES is refused (see
    `acml_dist.embedder.embed_rows` for the reasons). `std_cfg`: the model's StandardizeConfig (defaults)."""
    from acml_dist.embedder import embed_rows

    return embed_rows(model, list(smiles), schema, std_cfg, batch_size)[0]


def register_model(
    model_dir: str | Path, metrics: dict[str, Any], tracking_cfg: Any, tracking_uri: Optional[str] = None
) -> int:
    """Log `model_dir` as the `acml-gin` pyfunc, register a new version, tag it with `metrics` and with
    `champion_metric` (the name of the metric that decides the alias, evaluate's retrieval by default), and
    move the champion alias to it only when that metric beats the current champion's. Returns the version.
    Logs into the active run, else its own (in `tracking_uri`, else tracking.tracking_uri, else the store
    already set)."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType, Array

    from acml_dist.embedder import LOADER_MODULE

    name, alias, key = (
        tracking_cfg.registered_model,
        tracking_cfg.champion_alias,
        tracking_cfg.champion_metric,
    )
    signature = ModelSignature(
        # any type: a row that is not a string gets its own error instead of failing the whole request
        inputs=Schema([ColSpec(AnyType(), "smiles", required=False)]),
        outputs=Schema(
            [ColSpec(Array("float"), "embedding", required=False), ColSpec("string", "error", required=False)]
        ),
    )
    numeric = {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    uri = tracking_uri or getattr(tracking_cfg, "tracking_uri", None)
    with mlflow_session(f"register-{name}", uri, tracking_cfg.experiment) as session:
        if session.own:
            mlflow.log_metrics(numeric)
        info = mlflow.pyfunc.log_model(
            name="acml_gin",
            loader_module=LOADER_MODULE,  # code that ships with the package, not a pickle
            data_path=str(model_dir),  # model.safetensors + config.json
            signature=signature,
            # Shown on the model page and used by MLflow to check, before registering, that the logged
            # model loads and predicts.
            input_example=pd.DataFrame({"smiles": ["CCO", "c1ccccc1C(=O)O"]}),
            registered_model_name=name,
            # Explicit requirements: inferring them would load the model in a subprocess (slow, no gain).
            pip_requirements=["acml-dist", "torch", "torch-geometric", "rdkit", "numpy", "pandas"],
        )
    version = int(info.registered_model_version)
    client = MlflowClient()
    for k, v in numeric.items():
        client.set_model_version_tag(name, str(version), k, str(v))
    client.set_model_version_tag(name, str(version), "champion_metric", key)
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


def is_mlflow_uri(text: str) -> bool:
    """Whether `text` names something in an MLflow store (`models:/`, `runs:/`, `mlflow-artifacts:/`, ...)
    rather than a local path."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", text) is not None


def use_store_for(cfg: Any, target: str, ctx: Optional[RunContext] = None) -> None:
    """Before a job looks up `target` (its `model`, `predictor`, `init_from`): when it is an MLflow URI,
    point MLflow at the job's store, the one its stages write (tracking.tracking_uri, else
    $MLFLOW_TRACKING_URI, else sqlite:///<runs_root>/mlflow.db). A local path needs no store."""
    from acml_dist.context import use_tracking_store

    if is_mlflow_uri(str(target)):
        use_tracking_store((ctx or RunContext.from_config(cfg)).tracking_uri)


def download(uri: str, dst_path: Optional[str] = None) -> Path:
    """The artifacts `uri` names, downloaded from the current store; one clear error when it holds no such
    model, run or artifact (which store was asked, credentials masked)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst_path))
    except (MlflowException, OSError) as exc:
        store = redact(mlflow.get_tracking_uri())
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(
            f"{uri}: not fetched from the MLflow store {store} ({first}); if it lives in another store, "
            "name it with tracking.tracking_uri=... or $MLFLOW_TRACKING_URI"
        ) from exc


def resolve_model_dir(uri_or_path: str | Path) -> Path:
    """A saved-model dir from: the dir itself, a run dir (its `model/`), or an MLflow `models:/` / `runs:/`
    URI of the acml-gin pyfunc (downloaded from the current store, then checked: UnsafeFileError for a
    pickled model). A job looks URIs up in its own store: `use_store_for` first."""
    from acml_dist.models.io import is_model_dir

    path = Path(str(uri_or_path))
    for candidate in (path, path / "model"):
        if is_model_dir(candidate):
            return candidate
    text = str(uri_or_path)
    if (path / "MLmodel").is_file():  # a local MLflow model dir
        local = path
    elif is_mlflow_uri(text):
        local = download(text)
    else:
        raise FileNotFoundError(f"{text}: no saved model (config.json + weights) here or in {text}/model")
    from acml_dist.embedder import check_model_files

    check_model_files(local, text)
    found = sorted(p for p in [local, *local.rglob("*")] if p.is_dir() and is_model_dir(p))
    if not found:
        raise FileNotFoundError(f"{text}: downloaded to {local} but holds no acml saved model")
    return found[0]


def register_release(cfg: Any) -> dict[str, Any]:
    """Register a shipped encoder (default release/acml-gin-moses-1m) under `tracking.registered_model`
    (default acml-gin-release); the champion alias moves to it by the same rule as a trained model's, on
    the metrics its config.json recorded in training."""
    import mlflow

    from acml_dist.models.io import is_model_dir

    path = Path(cfg.model_dir)
    if not path.is_absolute() and not path.exists():
        path = Path(__file__).resolve().parents[1] / path  # the checkout's release/ folder
    if not is_model_dir(path):
        raise FileNotFoundError(f"{cfg.model_dir}: no saved model (config.json + model.safetensors) there")
    metrics = json.loads((path / "config.json").read_text()).get("extra", {}).get("metrics", {})
    from acml_dist.context import resolve_tracking_uri, use_tracking_store

    uri_store = resolve_tracking_uri(cfg.tracking, cfg.runs_root)
    use_tracking_store(uri_store)
    version = register_model(path, metrics, cfg.tracking, tracking_uri=uri_store)
    uri = f"models:/{cfg.tracking.registered_model}@{cfg.tracking.champion_alias}"
    print(f"registered {path} as {cfg.tracking.registered_model} v{version} ({mlflow.get_tracking_uri()}); "
          f"load it with mlflow.pyfunc.load_model({uri!r})")  # fmt: skip
    return {"version": version, "model_dir": str(path), "tracking_uri": mlflow.get_tracking_uri()}
