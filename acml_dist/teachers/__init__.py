"""Frozen unimodal teachers behind one interface (`acml_dist.teachers.base.Teacher`).

`load_teacher(name, cfg)` builds one from its `TeacherConfig`: `cfg.path` may be None (the kind's offline
default), a local directory/file, or a registry URI `models:/acml-teacher-<name>/<version>` or `...@alias`.
Heavy imports (torch, transformers, mlflow) happen inside the kind modules, not here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Union

from acml_dist.teachers.base import Teacher, TeacherError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from acml_dist.config.teachers import TeacherConfig

__all__ = ["KINDS", "Teacher", "TeacherError", "as_teacher_config", "load_teacher"]

# kind -> "module:Class"
KINDS: dict[str, str] = {
    "fingerprint": "acml_dist.teachers.fingerprint:FingerprintTeacher",
    "smiles_lm": "acml_dist.teachers.smiles_lm:SmilesLMTeacher",
    "cress_smiles": "acml_dist.teachers.published:CressSmilesTeacher",
    "cress_nmr13c": "acml_dist.teachers.published:CressNMR13CTeacher",
    "img2mol": "acml_dist.teachers.published:Img2MolTeacher",
    "conv1d_spectrum": "acml_dist.teachers.spectrum_conv:Conv1dSpectrumTeacher",
    "image_cnn": "acml_dist.teachers.image_cnn:ImageCNNTeacher",
}


def as_teacher_config(cfg: Union[TeacherConfig, DictConfig, dict[str, Any], None]) -> TeacherConfig:
    """A plain TeacherConfig dataclass from a DictConfig / dict / dataclass (Ray actors get plain objects)."""
    from dataclasses import fields

    from omegaconf import DictConfig, OmegaConf

    from acml_dist.config.teachers import TeacherConfig

    if cfg is None:
        return TeacherConfig()
    if isinstance(cfg, TeacherConfig):
        return cfg
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    known = {f.name for f in fields(TeacherConfig)}
    unknown = set(data) - known
    if unknown:
        raise TeacherError(f"unknown teacher config keys {sorted(unknown)}; known: {sorted(known)}")
    return TeacherConfig(**data)


def load_teacher(name: str, cfg: Union[TeacherConfig, DictConfig, dict[str, Any], None] = None) -> Teacher:
    """Build the frozen teacher `name` from its config (see module doc for `cfg.path`)."""
    tcfg = as_teacher_config(cfg)
    if tcfg.path and str(tcfg.path).startswith("models:/"):
        from acml_dist.teachers.registry import fetch_teacher

        tcfg = fetch_teacher(str(tcfg.path), overrides=tcfg)
    if tcfg.kind not in KINDS:
        raise TeacherError(f"teacher {name}: unknown kind {tcfg.kind!r}; known kinds: {sorted(KINDS)}")
    module, cls = KINDS[tcfg.kind].split(":")
    return getattr(importlib.import_module(module), cls)(name, tcfg)
