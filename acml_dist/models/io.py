"""Saving and loading a trained ACML model as plain files: the state dict as safetensors (`model.safetensors`:
raw tensors and a JSON header, nothing to unpickle) + `config.json` (model config, teacher dims, the data
standardisation the model was trained with, extras). Any process with the package installed rebuilds the
model; a directory saved by an older version (`model.pt`) is read with torch.load(weights_only=True)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"
LEGACY_WEIGHTS = "model.pt"  # torch state dict, loaded weights-only
CONFIG = "config.json"


def save_model(
    model: Any,
    directory: str | Path,
    extra: dict[str, Any] | None = None,
    standardize: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (an ACMLModel) to `directory`; `extra` (JSON-able: metrics, loss kind, ...) goes in
    config.json under "extra", `standardize` (the shards' `data.standardize`) under "standardize": serving
    applies the same bounds to its input."""
    import torch
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share storage
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "acml-gin/2"})
    (out / LEGACY_WEIGHTS).unlink(missing_ok=True)  # a re-save over an old dir: one set of weights
    config = {
        "format": "acml-gin/2",
        "model": model.model_cfg,
        "teacher_dims": model.teacher_dims,
        "teachers": list(model.teacher_dims),
        "max_logit_scale": model.max_logit_scale,
        "learnable_scale": isinstance(model.log_logit_scale, torch.nn.Parameter),
        "standardize": standardize,
        "extra": extra or {},
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return out


def is_model_dir(directory: str | Path) -> bool:
    """Whether `directory` holds a saved model (config.json + weights)."""
    path = Path(directory)
    return (path / CONFIG).is_file() and ((path / WEIGHTS).is_file() or (path / LEGACY_WEIGHTS).is_file())


def read_config(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / CONFIG).read_text())


def load_state(directory: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """The saved state dict: safetensors, else the legacy model.pt read weights-only (a file holding any other
    object is refused with UnsafeFileError, never unpickled)."""
    path = Path(directory)
    if (path / WEIGHTS).is_file():
        from safetensors.torch import load_file

        return load_file(str(path / WEIGHTS), device=map_location)
    import pickle

    import torch

    from acml_dist.errors import UnsafeFileError

    try:
        return torch.load(path / LEGACY_WEIGHTS, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"{path / LEGACY_WEIGHTS}: refused to load, it holds objects other than tensors ({str(exc)[:80]})"
        ) from None


def teacher_order(config: dict[str, Any]) -> list[str]:
    """The saved model's teachers in training order (the order of its heads' temperatures): `teacher_dims`
    is written with sorted keys, so the order is "teachers" (older saves: the dims' order)."""
    return list(config.get("teachers") or config.get("teacher_dims") or [])


def load_model(directory: str | Path, map_location: str = "cpu"):
    """Rebuild the ACMLModel saved in `directory` (eval mode)."""
    from acml_dist.models.acml import ACMLModel

    config = read_config(directory)
    dims = config["teacher_dims"]
    model = ACMLModel(
        config["model"],
        {name: dims[name] for name in teacher_order(config)},
        max_logit_scale=config.get("max_logit_scale", 100.0),
        learnable_scale=config.get("learnable_scale", True),
    )
    model.load_state_dict(load_state(directory, map_location))
    return model.eval()


def init_from_saved(model: Any, directory: str | Path) -> dict[str, list[str]]:
    """Start `model` (a new ACMLModel) from the weights saved in `directory`: continued pretraining.

    The GIN must be the same architecture (ValueError naming the first tensor that differs and the saved
    model config). Each teacher's two heads and its temperature are taken where the saved model has a
    teacher of that name whose head tensors have the same shapes; the others keep their fresh
    initialisation. Returns {"taken": [...], "fresh": [...]} teacher names."""
    import torch

    saved_cfg = read_config(directory)
    saved = load_state(directory)
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith("gin.") and (key not in saved or saved[key].shape != value.shape):
            found = tuple(saved[key].shape) if key in saved else "absent"
            raise ValueError(
                f"{directory}: its GIN differs from this run's at {key} (saved {found}, here "
                f"{tuple(value.shape)}); set model.* as it was saved: {saved_cfg.get('model')}"
            )
    merged = {k: (saved[k] if k.startswith("gin.") else v) for k, v in state.items()}
    saved_order = teacher_order(saved_cfg)
    taken, fresh = [], []
    for index, name in enumerate(model.teacher_dims):
        heads = [k for k in state if k.startswith((f"graph_heads.{name}.", f"teacher_heads.{name}."))]
        if name not in saved_order or any(k not in saved or saved[k].shape != state[k].shape for k in heads):
            fresh.append(name)
            continue
        merged.update({k: saved[k] for k in heads})
        if "log_logit_scale" in saved:  # a parameter, or a buffer when the scale was frozen
            scale = merged["log_logit_scale"].clone()
            scale[index] = saved["log_logit_scale"][saved_order.index(name)]
            merged["log_logit_scale"] = scale
        taken.append(name)
    with torch.no_grad():
        model.load_state_dict(merged)
    return {"taken": taken, "fresh": fresh}
