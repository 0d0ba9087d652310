"""The `teacher/` folder a registered teacher is logged as (the pyfunc's data): `teacher.json` (name, kind,
modality, dim, weights_hash, config) and `weights/` (a transformers directory or a `weights.pt` state dict;
nothing for fingerprints). Written by `registry.log_teacher`, read back by `registry.fetch_teacher` and by
the pyfunc (`teachers/pyfunc.py`) without either importing the other."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

from acml_dist.config.teachers import TeacherConfig
from acml_dist.teachers.base import Teacher, as_teacher_config


def write_artifacts(teacher: Teacher, folder: Path) -> None:
    """Write `teacher`'s `teacher.json` and weights into `folder` (created here)."""
    import torch

    weights = folder / "weights"
    weights.mkdir(parents=True)
    cfg = asdict(teacher.cfg)
    if teacher.kind == "smiles_lm":
        shutil.copytree(teacher.path, weights, dirs_exist_ok=True)  # type: ignore[attr-defined]
        cfg["path"] = "weights"
        # Pin how this checkpoint reads SMILES: the defaults differ between rxnfp and user directories.
        cfg["params"] = {**cfg["params"], "tokenizer": teacher.tokenizer_mode, "template": teacher.template}  # type: ignore[attr-defined]
    elif teacher.model is not None:
        state = {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.cpu()
                 for k, v in teacher.model.state_dict().items()}  # fmt: skip
        torch.save(state, weights / "weights.pt")
        cfg["path"] = "weights/weights.pt"
        cfg["params"] = {k: v for k, v in cfg["params"].items() if k != "random_init"}
    else:
        cfg["path"] = None
    info = {**teacher.describe(), "config": cfg}
    (folder / "teacher.json").write_text(json.dumps(info, indent=1, sort_keys=True, default=str))


# Params that say where a teacher's input comes from, not what the network is: the caller's win.
RUNTIME_PARAMS = ("render", "spectra")


def config_from_artifacts(folder: Path, overrides: Optional[TeacherConfig] = None) -> TeacherConfig:
    """TeacherConfig of a downloaded `teacher/` folder; weights path made absolute; the caller's run-time
    settings (device, batch size, weight, source, and the input params of RUNTIME_PARAMS) win over the
    stored ones; the architecture's params stay as trained."""
    info = json.loads((folder / "teacher.json").read_text())
    stored = dict(info["config"])
    if stored.get("path"):
        stored["path"] = str(folder / stored["path"])
    cfg = as_teacher_config(stored)
    if overrides is not None:
        cfg = replace(
            cfg,
            device=overrides.device,
            batch_size=overrides.batch_size,
            weight=overrides.weight,
            source=overrides.source,
            params={**cfg.params, **{k: v for k, v in overrides.params.items() if k in RUNTIME_PARAMS}},
        )
    return cfg
