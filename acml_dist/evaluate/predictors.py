"""Fine-tuned property predictors: `acml finetune` keeps each seed's fine-tuned ACML GIN + head, and
`acml predict` applies them to any molecule file. A predictor is a folder of plain files: the weights as
safetensors (nothing unpickled) and `predictor.json`, what rebuilds the network and turns its output into
labels (architecture, task, targets, the training split's target mean / std, chirality handling, and the
standardisation the molecules went through). `acml predict` itself: evaluate.predict_job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.errors import DataError
from acml_dist.log import get_logger

log = get_logger("evaluate")

WEIGHTS = "weights.safetensors"
META = "predictor.json"


def save_predictor(path: Path, model: Any, job: Any, chirality: str) -> None:
    """The fitted predictor of a fit job (encoder = `properties.EncoderView` of an ACML model) into `path`:
    weights and everything but the standardisation, which `acml finetune` adds (`export_predictor`)."""
    from safetensors.torch import save_file

    from acml_dist.evaluate.finetuning import target_scaling

    acml = job.encoder.model
    mean, std = target_scaling(job.data, job.split[0])
    meta = {
        "format": 1,
        "task": job.data.task,
        "targets": list(job.data.targets),
        "target_mean": mean.tolist(),
        "target_std": std.tolist(),
        "model_cfg": dict(acml.model_cfg),
        "teacher_dims": dict(acml.teacher_dims),
        "chirality": chirality,
    }
    path.mkdir(parents=True, exist_ok=True)
    # The GIN and the head only: the ACML projection heads (half the weights) take no part in a prediction.
    # clone: safetensors refuses tensors that share storage.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items() if _used(k)}
    save_file(state, str(path / WEIGHTS))
    (path / META).write_text(json.dumps(meta, indent=2))


def export_predictor(fit_dir: Path, out: Path, extra: dict) -> None:
    """A kept fit's predictor copied to `out`, its JSON completed with `extra` (standardisation, seed)."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fit_dir / WEIGHTS, out / WEIGHTS)
    meta = json.loads((fit_dir / META).read_text()) | extra
    (out / META).write_text(json.dumps(meta, indent=2))


def predictor_dirs(path: Path) -> list[Path]:
    """`path` itself when it is a predictor, else the predictors directly under it (an ensemble)."""
    if (path / META).exists():
        return [path]
    found = sorted(p for p in path.glob("*") if (p / META).exists()) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{path}: no predictor ({META}) there or in its sub-folders")
    return found


def load_predictor(path: Path) -> tuple[Any, dict]:
    """(network in eval mode, predictor.json) of one predictor folder."""
    from safetensors.torch import load_file

    from acml_dist.evaluate.finetuning import EncoderView, build_predictor
    from acml_dist.models import ACMLModel

    meta = json.loads((path / META).read_text())
    encoder = EncoderView(ACMLModel(meta["model_cfg"], meta["teacher_dims"]))
    model = build_predictor(encoder, int(meta["model_cfg"]["emb_dim"]), len(meta["targets"]))
    missing, unexpected = model.load_state_dict(load_file(str(path / WEIGHTS)), strict=False)
    if unexpected or any(_used(k) for k in missing):
        raise DataError(
            f"{path / WEIGHTS} does not fit {META}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval(), meta


def _used(key: str) -> bool:
    """Whether a predictor's state-dict entry takes part in a prediction: the GIN (under the encoder view's
    ACML model, `0.model.gin`) and the head (`1`)."""
    return key.startswith(("0.model.gin.", "1."))


def predict_graphs(model: Any, meta: dict, graphs: list, batch_size: int = 256) -> np.ndarray:
    """(n, targets) predictions in label units (probabilities for classification)."""
    import torch
    from torch_geometric.loader import DataLoader

    from acml_dist.evaluate.chirality import prepare_graphs

    out = []
    with torch.no_grad():
        for batch in DataLoader(prepare_graphs(graphs, meta["chirality"]), batch_size=batch_size):
            out.append(model(batch).numpy())
    pred = np.concatenate(out) if out else np.zeros((0, len(meta["targets"])))
    if meta["task"] == "regression":
        return pred * np.asarray(meta["target_std"]) + np.asarray(meta["target_mean"])
    return 1 / (1 + np.exp(-pred))
