"""Frozen unimodal teachers behind one interface (`acml_dist.teachers.base.Teacher`).

`load_teacher(name, cfg)` builds one from its `TeacherConfig`: `cfg.path` may be None (the kind's offline
default), a local directory/file, or a registry URI `models:/acml-teacher-<name>/<version>` or `...@alias`.
Heavy imports (torch, transformers, mlflow) happen inside the kind modules, not here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Union

from acml_dist.teachers.base import Teacher, TeacherError, as_teacher_config
from acml_dist.teachers.registry import fetch_teacher

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from acml_dist.config.teachers import TeacherConfig

__all__ = ["KINDS", "Teacher", "TeacherError", "as_teacher_config", "load_teacher"]

# kind -> "module:Class"
KINDS: dict[str, str] = {
    "fingerprint": "acml_dist.teachers.fingerprint:FingerprintTeacher",
    "descriptors": "acml_dist.teachers.descriptors:DescriptorTeacher",
    "smiles_lm": "acml_dist.teachers.smiles_lm:SmilesLMTeacher",
    "cress_smiles": "acml_dist.teachers.published:CressSmilesTeacher",
    "cress_nmr13c": "acml_dist.teachers.published:CressNMR13CTeacher",
    "img2mol": "acml_dist.teachers.published:Img2MolTeacher",
    "conv1d_spectrum": "acml_dist.teachers.spectrum_conv:Conv1dSpectrumTeacher",
    "image_cnn": "acml_dist.teachers.image_cnn:ImageCNNTeacher",
}


def load_teacher(name: str, cfg: Union[TeacherConfig, DictConfig, dict[str, Any], None] = None) -> Teacher:
    """Build the frozen teacher `name` from its config (see module doc for `cfg.path`)."""
    tcfg = as_teacher_config(cfg)
    if tcfg.path and str(tcfg.path).startswith("models:/"):
        tcfg = fetch_teacher(str(tcfg.path), overrides=tcfg)
    if tcfg.kind not in KINDS:
        raise TeacherError(f"teacher {name}: unknown kind {tcfg.kind!r}; known kinds: {sorted(KINDS)}")
    module, cls = KINDS[tcfg.kind].split(":")
    return getattr(importlib.import_module(module), cls)(name, tcfg)
