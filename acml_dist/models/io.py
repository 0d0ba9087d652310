"""Saving and loading a trained ACML model as plain files: a torch state dict of
tensors (`model.pt`, loaded with weights_only=True) + `config.json` (model config, teacher dims, extras).
No pickled code: any process with the package installed can rebuild the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS = "model.pt"
CONFIG = "config.json"


def save_model(model: Any, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` (an ACMLModel) to `directory`; `extra` (JSON-able: metrics, loss kind, ...) goes in
    config.json under "extra"."""
    import torch

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out / WEIGHTS)
    config = {
        "format": "acml-gin/1",
        "model": model.model_cfg,
        "teacher_dims": model.teacher_dims,
        "teachers": list(model.teacher_dims),
        "max_logit_scale": model.max_logit_scale,
        "learnable_scale": isinstance(model.log_logit_scale, torch.nn.Parameter),
        "extra": extra or {},
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return out


def read_config(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / CONFIG).read_text())


def load_model(directory: str | Path, map_location: str = "cpu"):
    """Rebuild the ACMLModel saved in `directory` (eval mode)."""
    import torch

    from acml_dist.models.acml import ACMLModel

    config = read_config(directory)
    model = ACMLModel(
        config["model"],
        config["teacher_dims"],
        max_logit_scale=config.get("max_logit_scale", 100.0),
        learnable_scale=config.get("learnable_scale", True),
    )
    state = torch.load(Path(directory) / WEIGHTS, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.eval()
