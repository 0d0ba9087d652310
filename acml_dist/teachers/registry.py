"""Teachers in the MLflow model registry as `acml-teacher-<name>` (config, weights, hash, dim).

`log_teacher` registers a loaded teacher as a `loader_module` pyfunc (`acml_dist.teachers.pyfunc`, nothing
pickled) whose data folder `teacher/` (`teachers/artifacts.py`) holds `teacher.json` (name, kind, modality,
dim, weights_hash, config) and `weights/`. `fetch_teacher("models:/acml-teacher-x/3")`
downloads it and returns a TeacherConfig pointing at the local weights, so `load_teacher` accepts
`path: models:/...` anywhere a config name or a local path works. mlflow is imported lazily.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Optional

from acml_dist.config.teachers import TeacherConfig
from acml_dist.context import RunContext, use_tracking_store
from acml_dist.log import get_logger
from acml_dist.teachers.artifacts import config_from_artifacts, write_artifacts
from acml_dist.teachers.base import Teacher, TeacherError

log = get_logger("register")
# The pyfunc that loads a logged teacher, named (not imported): it loads teachers through this package.
LOADER_MODULE = "acml_dist.teachers.pyfunc"


def registered_name(name: str) -> str:
    return f"acml-teacher-{name}"


def teacher_store(cfg: Any, tcfg: Any) -> Optional[str]:
    """The MLflow store a `models:/` teacher is fetched from: the job's own (`RunContext.tracking_uri`:
    tracking.tracking_uri, else $MLFLOW_TRACKING_URI, else <runs_root>/mlflow.db, where `acml
    pretrain-teacher` registers by default), not MLflow's default; None for a teacher not in a registry."""
    path = tcfg.get("path") if hasattr(tcfg, "get") else getattr(tcfg, "path", None)
    return RunContext.from_config(cfg).tracking_uri if str(path or "").startswith("models:/") else None


def log_teacher(teacher: Teacher, tracking_uri: Optional[str] = None, alias: Optional[str] = None) -> str:
    """Log `teacher` to MLflow and register it as `acml-teacher-<name>`; returns the new version."""
    import mlflow
    from mlflow import MlflowClient

    if tracking_uri:
        use_tracking_store(tracking_uri)
    name = registered_name(teacher.name)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "teacher"
        write_artifacts(teacher, folder)
        active = mlflow.active_run()  # e.g. the `acml pretrain-teacher` run that trained it: log there
        if active is None:
            mlflow.set_experiment("acml-teachers")
        with mlflow.start_run(run_name=name) if active is None else contextlib.nullcontext():
            mlflow.log_params({"kind": teacher.kind, "modality": teacher.modality, "dim": teacher.dim})
            mlflow.set_tags({"weights_hash": teacher.weights_hash(), "acml.teacher": teacher.name})
            info = mlflow.pyfunc.log_model(
                name="teacher",
                loader_module=LOADER_MODULE,  # code shipped with the package, no pickle
                data_path=str(folder),
                pip_requirements=[],  # the project's environment; skip slow requirement inference
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_model_version_tag(name, version, "weights_hash", teacher.weights_hash())
    client.set_model_version_tag(name, version, "dim", str(teacher.dim))
    if alias:
        client.set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s (hash %s)", name, version, teacher.weights_hash()[:12])
    return version


def fetch_teacher(
    uri: str, overrides: Optional[TeacherConfig] = None, dst: Optional[str] = None
) -> TeacherConfig:
    """Download a registered teacher (`models:/acml-teacher-<name>/<version>` or `...@alias`)."""
    import mlflow

    try:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst or tempfile.mkdtemp())
        )
    except Exception as exc:
        raise TeacherError(f"cannot fetch teacher {uri} from the MLflow registry: {exc}") from exc
    # data/teacher: a loader_module model; artifacts/teacher: one logged before (its python_model.pkl is
    # never loaded here: only teacher.json and the weights, read weights-only)
    folder = next((f for f in (local / "data" / "teacher", local / "artifacts" / "teacher")
                   if (f / "teacher.json").exists()), None)  # fmt: skip
    if folder is None:
        raise TeacherError(f"{uri} is not an acml teacher (no data/teacher/teacher.json)")
    return config_from_artifacts(folder, overrides)


def registered_hash(uri: str) -> dict[str, Any]:
    """weights_hash and dim of a registered version without downloading it."""
    from mlflow import MlflowClient

    ref = uri.removeprefix("models:/")
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, version = ref.split("/", 1)
        mv = client.get_model_version(name, version)
    return {"version": mv.version, **mv.tags}
