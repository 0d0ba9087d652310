"""Fine-tuned property predictors: `acml finetune` keeps each seed's fine-tuned ACML GIN + head, and
`acml predict` applies them to any molecule file. A predictor is a folder of plain files: the weights as
safetensors (nothing unpickled) and `predictor.json`, what rebuilds the network and turns its output into
labels (architecture, task, targets, the training split's target mean / std, chirality handling, and the
standardisation the molecules went through), and, when the head reads `eval.mol_features`, the features'
normaliser (`features.safetensors`, with the descriptor names in the JSON). `acml predict` itself:
evaluate.predict_job."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.errors import DataError
from acml_dist.evaluate.mol_features import SCALER_FILE, FeatureScaler
from acml_dist.log import get_logger

log = get_logger("evaluate")

WEIGHTS = "weights.safetensors"
META = "predictor.json"
# A registered predictor's MLflow loader (`acml finetune register=NAME`): evaluate.predictor_pyfunc.
LOADER_MODULE = "acml_dist.evaluate.predictor_pyfunc"


def save_predictor(path: Path, fit: Any, job: Any, chirality: str, mol_features: str = "") -> None:
    """The fitted predictor of a fit job (encoder = `properties.EncoderView` of an ACML model) into `path`:
    weights, the molecule features' normaliser when the head reads `mol_features`, and everything but the
    standardisation, which `acml finetune` adds (`export_predictor`)."""
    from safetensors.torch import save_file

    from acml_dist.chem.descriptors import feature_names
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
    if fit.feature_scaler is not None:  # the raw columns, by name: another RDKit may order them otherwise
        meta |= {"mol_features": mol_features, "feature_names": feature_names(mol_features)}
        fit.feature_scaler.save(path / SCALER_FILE)
    # The GIN and the head only: the ACML projection heads (half the weights) take no part in a prediction.
    # clone: safetensors refuses tensors that share storage.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in fit.model.state_dict().items() if _used(k)}
    save_file(state, str(path / WEIGHTS))
    (path / META).write_text(json.dumps(meta, indent=2))


def export_predictor(fit_dir: Path, out: Path, extra: dict) -> None:
    """A kept fit's predictor copied to `out`, its JSON completed with `extra` (standardisation, seed)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, SCALER_FILE):
        if (fit_dir / name).exists():
            shutil.copyfile(fit_dir / name, out / name)
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


@dataclass
class Predictor:
    model: Any  # GIN + head, in eval mode
    meta: dict  # predictor.json
    scaler: FeatureScaler | None = None  # with `meta["mol_features"]`: the head's feature normaliser


def load_predictor(path: Path) -> Predictor:
    """One predictor folder, ready to predict."""
    from safetensors.torch import load_file

    from acml_dist.evaluate.finetuning import EncoderView, build_predictor
    from acml_dist.models import ACMLModel

    meta = json.loads((path / META).read_text())
    scaler = FeatureScaler.load(path / SCALER_FILE) if meta.get("mol_features") else None
    encoder = EncoderView(ACMLModel(meta["model_cfg"], meta["teacher_dims"]))
    n_features = 0 if scaler is None else int(scaler.keep.sum())
    width, targets = int(meta["model_cfg"]["emb_dim"]), len(meta["targets"])
    model = build_predictor(encoder, width, targets, n_features=n_features)
    missing, unexpected = model.load_state_dict(load_file(str(path / WEIGHTS)), strict=False)
    if unexpected or any(_used(k) for k in missing):
        raise DataError(
            f"{path / WEIGHTS} does not fit {META}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return Predictor(model.eval(), meta, scaler)


def raw_features(meta: dict, smiles: list[str], progress: bool = True) -> np.ndarray | None:
    """The molecule features a predictor's head reads (None if it reads none), raw, in the columns it was
    fitted on: this RDKit's descriptors matched to the stored names."""
    from acml_dist.chem.descriptors import feature_names
    from acml_dist.evaluate.mol_features import features_with_progress

    kind = meta.get("mol_features") or ""
    if not kind:
        return None
    names, stored = feature_names(kind), meta["feature_names"]
    lacking = sorted(set(stored) - set(names))
    if lacking:
        raise DataError(f"this RDKit lacks {len(lacking)} descriptor(s) the predictor reads: {lacking[:5]}")
    features = features_with_progress(smiles, kind, progress)
    return features[:, [names.index(name) for name in stored]]


def _used(key: str) -> bool:
    """Whether a predictor's state-dict entry takes part in a prediction: the GIN (under the encoder view's
    ACML model, `0.model.gin`) and the head (`1`)."""
    return key.startswith(("0.model.gin.", "1."))


def predict_graphs(predictor: Predictor, graphs: list, features: np.ndarray | None = None,
                   batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """(n, targets) predictions in label units (probabilities for classification); `features`: the
    molecules' `raw_features`, when the predictor's head reads them."""
    import torch
    from torch_geometric.loader import DataLoader

    from acml_dist.evaluate.chirality import prepare_graphs

    meta = predictor.meta
    graphs = prepare_graphs(graphs, meta["chirality"])
    if predictor.scaler is not None:
        if features is None:
            raise ValueError("this predictor's head reads molecule features: pass raw_features(meta, smiles)")
        scaled = torch.from_numpy(predictor.scaler.transform(features))
        graphs = [copy.copy(g) for g in graphs]
        for g, row in zip(graphs, scaled):
            g.mol_features = row.view(1, -1)
    out = []
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=batch_size):
            out.append(predictor.model(batch).numpy())
    pred = np.concatenate(out) if out else np.zeros((0, len(meta["targets"])))
    if meta["task"] == "regression":
        return pred * np.asarray(meta["target_std"]) + np.asarray(meta["target_mean"])
    return 1 / (1 + np.exp(-pred))


def predictors_in_model(local: Path, source: str) -> Path:
    """The predictors folder of a downloaded registered predictor (`local` holds its MLmodel), after
    checking that it is one: `LOADER_MODULE` as its loader, no pickle (embedder.check_model_files)."""
    import yaml

    from acml_dist.embedder import check_model_files

    check_model_files(local, source, loader=LOADER_MODULE)
    data = (yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]).get("data")
    if not data:
        raise FileNotFoundError(f"{source}: a registered model without a predictors folder")
    return local / data
