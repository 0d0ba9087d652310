"""The run context: where a job's dataset and run live, which MLflow store it tracks to, and the one way a
stage joins the active MLflow run or starts its own. Derived once from the composed config
(`RunContext.from_config(cfg)`), then handed to what the stage calls.

No heavy imports (MLflow loads inside `mlflow_session` only), so it sits under every layer like `config`.

    dataset_dir   cfg.shards, else <shards_root>/<name>          (featurisation writes it: its `output`)
    run_dir       cfg.output of a training job, else <runs_root>/<name>
    tracking_uri  tracking.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<runs_root>/mlflow.db

A new SQLite store is created under a file lock: two commands started together on a fresh machine both run
MLflow's schema migration otherwise, and one dies in alembic ("expected to match one row").
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


def _get(cfg: Any, key: str) -> Any:
    return cfg.get(key) if key in cfg else None


def dataset_dir(cfg: Any) -> Path:
    """The featurised dataset a job reads: `cfg.shards` when given, else <shards_root>/<name>."""
    explicit = _get(cfg, "shards")
    return Path(explicit) if explicit else Path(cfg.shards_root) / cfg.name


def resolve_tracking_uri(tracking_cfg: Any = None, runs_root: str | Path = "runs") -> str:
    """tracking.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<runs_root>/mlflow.db (the folder is
    created)."""
    uri = getattr(tracking_cfg, "tracking_uri", None) if tracking_cfg is not None else None
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = Path(runs_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def create_sqlite_store(tracking_uri: str) -> None:
    """Create (migrate) a `sqlite:///` store that does not exist yet, one process at a time; other URIs and
    existing stores are left alone."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    db = Path(tracking_uri[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    # Always through the lock: a file that exists may still be mid-migration in the process holding it.
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not db.exists() or db.stat().st_size == 0:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri).search_experiments(max_results=1)  # runs the migration once


def use_tracking_store(tracking_uri: str) -> None:
    """Point MLflow at `tracking_uri` (every stage goes through here); a new SQLite store made safely."""
    import mlflow

    create_sqlite_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)


@dataclass(frozen=True)
class MlflowSession:
    """The MLflow run a stage logs to; `own` when the stage started it (and so ends it)."""

    run_id: str
    own: bool


@contextmanager
def mlflow_session(
    run_name: str, tracking_uri: Optional[str] = None, experiment: Optional[str] = None
) -> Iterator[MlflowSession]:
    """Join the active MLflow run, or $MLFLOW_RUN_ID (a pipeline stage's run handed to a worker), or start
    a run named `run_name` in `experiment`; the run is ended on leaving only when started here. `tracking_uri`
    None keeps the store already set."""
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        yield MlflowSession(active.info.run_id, own=False)
        return
    if tracking_uri:
        use_tracking_store(tracking_uri)
    handed = os.environ.get("MLFLOW_RUN_ID")
    if not handed and experiment:
        mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=None if handed else run_name) as run:
        yield MlflowSession(run.info.run_id, own=not handed)


@dataclass(frozen=True)
class RunContext:
    """Paths and tracking of one job, computed once from its config."""

    name: str
    dataset_dir: Path
    run_dir: Path
    runs_root: Path
    tracking: Any = None  # the config's `tracking` section (TrackingConfig-like), None without one
    _uri: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_config(
        cls, cfg: Any, *, dataset: Optional[str | Path] = None, output: Optional[str | Path] = None
    ) -> RunContext:
        """`dataset`: the dataset folder when the job names it otherwise than `shards` (featurisation's
        `output`); `output`: the run folder when the job names one (a training job's `output`)."""
        name = str(_get(cfg, "name") or "")
        runs_root = Path(_get(cfg, "runs_root") or "runs")
        has_dataset = dataset or _get(cfg, "shards") or _get(cfg, "shards_root")
        return cls(
            name=name,
            dataset_dir=Path(dataset) if dataset else dataset_dir(cfg) if has_dataset else Path(),
            run_dir=Path(output) if output else runs_root / name,
            runs_root=runs_root,
            tracking=_get(cfg, "tracking"),
        )

    @property
    def tracking_enabled(self) -> bool:
        return bool(self.tracking is not None and self.tracking.get("enabled", True))

    @property
    def tracking_uri(self) -> str:
        """Resolved on first use (it may create <runs_root>), then the same for the whole job."""
        if "uri" not in self._uri:
            self._uri["uri"] = resolve_tracking_uri(self.tracking, self.runs_root)
        return self._uri["uri"]

    @contextmanager
    def mlflow_run(self, run_name: str, enabled: bool = True) -> Iterator[Optional[MlflowSession]]:
        """`mlflow_session` in this job's store and experiment; None when tracking is off (or not `enabled`,
        e.g. on ranks other than 0)."""
        if not (enabled and self.tracking_enabled):
            yield None
            return
        with mlflow_session(run_name, self.tracking_uri, self.tracking.get("experiment")) as session:
            yield session
