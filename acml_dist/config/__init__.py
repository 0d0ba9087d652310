"""Configuration: typed schemas per stage, composed by Hydra from the top-level `configs/` tree.

Every entry point (CLI subcommand, `acml_dist/train.py`, `cluster/*.py`) calls
`load_config(entry, overrides)`.
The composed YAML is merged onto the entry's dataclass schema, so an unknown key or a wrong type fails here
with the key's full name instead of deep inside a stage.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from acml_dist.config.cluster import ClusterConfig
from acml_dist.config.data import DataConfig
from acml_dist.config.eval import EvalConfig
from acml_dist.config.images import DepictJob
from acml_dist.config.model import ModelConfig
from acml_dist.config.spectra import ImportSpectraJob, NmrPredictJob, PretrainTeacherJob
from acml_dist.config.teachers import TeacherConfig
from acml_dist.config.train import LossConfig, TrainerConfig
from acml_dist.errors import ConfigError

__all__ = ["ConfigError", "config_hash", "load_config", "to_yaml", "validate"]


@dataclass
class TrackingConfig:
    # None: $MLFLOW_TRACKING_URI if set, else a local SQLite file under runs_root.
    tracking_uri: Optional[str] = None
    experiment: str = "acml"
    registered_model: str = "acml-gin"
    champion_alias: str = "champion"
    # Metric that decides whether a new version takes the champion alias (higher is better).
    champion_metric: str = "retrieval_top1"
    enabled: bool = True


@dataclass
class FeaturizeJob:
    name: str = "demo"
    input: Optional[str] = None  # file, folder or glob; None: the packaged corpus named by data.source
    output: Optional[str] = None  # None: <shards_root>/<name>
    shards_root: str = "shards"
    overwrite: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass
class EmbedJob:
    name: str = "demo"
    shards: Optional[str] = None  # featurised dataset dir; None: <shards_root>/<name>
    shards_root: str = "shards"
    overwrite: bool = False
    teachers: dict[str, TeacherConfig] = field(default_factory=dict)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class TrainJob:
    name: str = "demo"
    shards: Optional[str] = None
    shards_root: str = "shards"
    output: Optional[str] = None  # run dir for checkpoints; None: <runs_root>/<name>
    runs_root: str = "runs"
    resume: bool = True
    # Continued pretraining: a saved model (dir, run dir or models:/ URI) whose GIN, and heads of teachers
    # it shares with this run, start the run (`acml_dist.models.io.init_from_saved`). A checkpoint of this
    # run, when resumed, wins over it. None: a fresh initialisation.
    init_from: Optional[str] = None
    teachers: dict[str, TeacherConfig] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class EvaluateJob:
    name: str = "demo"
    model: str = "models:/acml-gin@champion"  # registry URI, run dir, or saved model dir
    shards: Optional[str] = None
    shards_root: str = "shards"
    output: Optional[str] = None  # report dir; None: <runs_root>/<name>/evaluation
    runs_root: str = "runs"
    teachers: dict[str, TeacherConfig] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class FinetuneJob:
    name: str = "finetune"
    model: str = "models:/acml-gin@champion"
    output: Optional[str] = None
    runs_root: str = "runs"
    # a registered model name: the fine-tuned predictors as an MLflow pyfunc (evaluate.predictor_pyfunc)
    register: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class EmbedSmilesJob:
    input: str = "???"
    output: str = "???"
    model: str = "models:/acml-gin@champion"
    smiles_column: str = "smiles"
    batch_size: int = 256
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class PredictJob:
    """`acml predict`: a fine-tuned predictor (or a folder of them, an ensemble) on a molecule file."""

    # runs/<name>/finetune/predictors (every seed) or .../predictors/seed0; or from MLflow (looked up in
    # `tracking`'s store): runs:/<run id>/finetune/predictors, or models:/<name>/<version> (register=)
    predictor: str = "???"
    input: str = "???"  # CSV / TSV / Parquet / .smi / SDF
    output: str = "???"  # .csv, or .parquet
    smiles_column: str = "smiles"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class ServeJob:
    model: str = "models:/acml-gin@champion"
    # loopback unless told otherwise; $ACML_SERVE_HOST / $ACML_SERVE_PORT override these defaults
    host: str = "${oc.env:ACML_SERVE_HOST,127.0.0.1}"
    port: int = "${oc.env:ACML_SERVE_PORT,5001}"  # type: ignore[assignment]  # resolved to an int
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class RegisterReleaseJob:
    """`acml register-release`: the encoder shipped in release/ into the user's MLflow registry."""

    model_dir: str = "release/acml-gin-moses-1m"  # relative: to the working directory, else the checkout
    runs_root: str = "runs"  # where the default local tracking store lives (as the other stages)
    tracking: TrackingConfig = field(
        default_factory=lambda: TrackingConfig(registered_model="acml-gin-release")
    )


@dataclass
class PretrainJob:
    """The whole pipeline (cluster/pretrain.py): featurise -> embed -> train -> evaluate -> register."""

    name: str = "demo"
    input: Optional[str] = None
    shards_root: str = "shards"
    runs_root: str = "runs"
    overwrite: bool = False
    stages: list[str] = field(default_factory=lambda: ["featurize", "embed", "train", "evaluate", "register"])
    data: DataConfig = field(default_factory=DataConfig)
    teachers: dict[str, TeacherConfig] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


SCHEMAS: dict[str, type] = {
    "featurize": FeaturizeJob,
    "embed": EmbedJob,
    "train": TrainJob,
    "evaluate": EvaluateJob,
    "finetune": FinetuneJob,
    "embed_smiles": EmbedSmilesJob,
    "predict": PredictJob,
    "serve": ServeJob,
    "pretrain": PretrainJob,
    "nmr_predict": NmrPredictJob,
    "import_spectra": ImportSpectraJob,
    "pretrain_teacher": PretrainTeacherJob,
    "register_release": RegisterReleaseJob,
    "depict": DepictJob,
}


STRING_KEYS_SHADOWING_GROUPS = {
    "evaluate": ("model",),
    "finetune": ("model",),
    "embed_smiles": ("model",),
    "serve": ("model",),
}


def config_dir() -> Path:
    """The Hydra config tree: $ACML_CONFIG_DIR, else the checkout's `configs/`, else the shipped copy."""
    env = os.environ.get("ACML_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2] / "configs"  # a source checkout / Ray working dir
    if (checkout / "pretrain.yaml").exists():
        return checkout
    import acml_dist.configs as shipped  # an installed wheel

    return Path(shipped.__file__).resolve().parent


def load_config(entry: str, overrides: list[str] | None = None, complete: bool = True) -> DictConfig:
    """Compose `configs/<entry>.yaml` with Hydra overrides and validate it against the entry's schema
    (`complete=False`: mandatory values may stay unset, as for `--cfg job`). ConfigError: one line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if entry not in SCHEMAS:
        raise ConfigError(f"unknown entry point {entry!r}; known: {sorted(SCHEMAS)}")
    # `model=<uri>` on evaluate/finetune/embed-smiles names a trained model, not the `model/` config group
    # that Hydra would look it up in: apply it after composition.
    hydra_overrides, late, teacher_adds = [], {}, []
    has_teachers = "teachers" in {f.name for f in dataclasses.fields(SCHEMAS[entry])}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if sep and key in STRING_KEYS_SHADOWING_GROUPS.get(entry, ()):
            late[key] = value
        elif sep and has_teachers and key.startswith("+") and key.lstrip("+").startswith("teachers."):
            teacher_adds.append(item)
        else:
            hydra_overrides.append(item)
    from hydra.core.config_store import ConfigStore

    # Each entry's YAML lists `<entry>_schema` first in its defaults: Hydra composes onto the typed
    # dataclass, so a key that exists in the schema can be overridden even when no YAML sets it.
    ConfigStore.instance().store(name=f"{entry}_schema", node=SCHEMAS[entry])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=entry):
            raw = compose(config_name=entry, overrides=hydra_overrides)
        with open_dict(raw):
            for key, value in late.items():
                raw[key] = value
        _add_to_teachers(raw, teacher_adds)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_one_line(entry, exc)) from None
    finally:
        GlobalHydra.instance().clear()
    return validate(entry, raw, complete)


def _add_to_teachers(raw: DictConfig, items: list[str]) -> None:
    """Apply `+teachers.<name>[.<key>]=value` (and `++`) after composition. Through Hydra a new teacher
    name fails: OmegaConf refuses the empty dict Hydra creates for it in a dict[str, TeacherConfig] ("dict
    is not a subclass of TeacherConfig"). Here a new name starts from TeacherConfig's defaults; an existing
    one gets the key set. Only `params` (kind-specific) takes keys TeacherConfig lacks."""
    if not items:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(items):
        path = override.key_or_group.split(".")
        if path[1] not in raw.teachers:
            with open_dict(raw.teachers):
                raw.teachers[path[1]] = OmegaConf.structured(TeacherConfig)
        free = len(path) == 2 or path[2] == "params"
        OmegaConf.update(raw, override.key_or_group, override.value(), merge=True, force_add=free)


def _one_line(entry: str, exc: BaseException) -> str:
    """A Hydra / OmegaConf error as one line naming the key, without OmegaConf's internals (and without
    Hydra's advice to append a misspelt key with `+`)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from acml_dist.config.checks import unknown_key_message

    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key:
        parent = key.rpartition(".")[0]
        node = OmegaConf.structured(SCHEMAS[entry])
        node = OmegaConf.select(node, parent) if parent else node
        return unknown_key_message(key, [str(k) for k in node.keys()] if isinstance(node, DictConfig) else [])
    text = getattr(cause, "msg", None) or str(cause)
    first = text.strip().splitlines()[0] if text.strip() else type(cause).__name__
    first = first.split(" To append to your config use")[0]
    if first.startswith("Could not append to config. An item is already at"):
        first += " (set an existing key without the +)"
    return f"{key}: {first}" if key and key not in first else first


def validate(entry: str, raw: Any, complete: bool = True) -> DictConfig:
    """Merge `raw` onto the entry's schema; ConfigError (one line) for an unknown key, a wrong type, an
    impossible value, or (complete=True) a mandatory value left unset."""
    from acml_dist.config.checks import check_values, missing_values, unknown_key_message, unknown_keys

    schema = OmegaConf.structured(SCHEMAS[entry])
    unknown = unknown_keys(schema, raw if isinstance(raw, DictConfig) else OmegaConf.create(raw))
    if unknown:
        raise ConfigError(unknown_key_message(*unknown[0]))
    try:
        cfg = OmegaConf.merge(schema, raw)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(_one_line(entry, exc)) from None
    problems = check_values(cfg)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    missing = missing_values(cfg) if complete else []
    if missing:
        raise ConfigError(f"missing required value: {', '.join(missing)} (set {missing[0]}=...)")
    OmegaConf.set_struct(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The config as YAML for printing (`--cfg job`), URL credentials and secret parameters masked."""
    from acml_dist.redact import redact

    return redact(OmegaConf.to_yaml(cfg))


def config_hash(cfg: Any) -> str:
    import hashlib
    import json

    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
