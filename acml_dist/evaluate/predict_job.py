"""`acml predict`: the predictors `acml finetune` kept (evaluate.predictors) applied to a molecule file, its
molecules taking the fine-tuning route (`featurize_labelled`: the same standardisation and graphs). The
same predictions for a DataFrame (`predict_frame`) serve the registered pyfunc (evaluate.predictor_pyfunc)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.errors import DataError
from acml_dist.evaluate.predictors import (
    Predictor,
    load_predictor,
    predict_graphs,
    predictor_dirs,
    raw_features,
)
from acml_dist.log import get_logger

log = get_logger("evaluate")


def load_ensemble(folder: Path) -> list[Predictor]:
    """The predictors under `folder` (one, or a folder of seeds), checked to agree on what they predict
    from what."""
    loaded = [load_predictor(d) for d in predictor_dirs(folder)]
    meta = loaded[0].meta
    for other in loaded[1:]:
        same = ("task", "targets", "standardize", "model_cfg", "mol_features", "feature_names")
        if any(other.meta.get(k) != meta.get(k) for k in same):
            raise DataError(f"{folder}: its predictors differ in task, targets or inputs")
    return loaded


def predictor_folder(cfg: Any) -> Path:
    """`cfg.predictor` as a local folder: a path as it is; an MLflow URI downloaded from the job's store:
    the run's artifacts as `acml finetune` logs them (`runs:/<run id>/finetune/predictors`), or the
    registered predictor (`models:/<name>/<version>`; its data folder)."""
    from acml_dist.evaluate.predictors import predictors_in_model
    from acml_dist.tracking import download, is_mlflow_uri, use_store_for

    if not is_mlflow_uri(str(cfg.predictor)):
        return Path(cfg.predictor)
    use_store_for(cfg, str(cfg.predictor))
    local = download(str(cfg.predictor))
    return predictors_in_model(local, str(cfg.predictor)) if (local / "MLmodel").exists() else local


PREDICT_CHUNK = 10_000  # molecules featurised and predicted at a time: memory stays flat on a large library


def predict_frame(loaded: list[Predictor], smiles: list, name: str = "input", progress: bool = True) -> Any:
    """One row per SMILES, in order: `error` (why a row has no prediction; None when it has one) and
    `pred_<target>` (the ensemble's mean, with `pred_<target>_std` beside it for more than one predictor).
    Works through the input `PREDICT_CHUNK` molecules at a time."""
    import pandas as pd
    from tqdm.auto import tqdm

    parts, invalid = [], []
    with tqdm(total=len(smiles), desc=f"{name}: predict", unit="mol", disable=not progress) as bar:
        for start in range(0, max(len(smiles), 1), PREDICT_CHUNK):
            part, bad = _predict_chunk(loaded, smiles[start : start + PREDICT_CHUNK], name)
            parts.append(part)
            invalid += bad
            bar.update(len(part))
    if invalid:
        counts = Counter(str(r["reason"]).split(":")[0] for r in invalid).most_common()
        log.warning("%s: %d of %d rows not predicted (%s; each row's reason is in its `error`)", name,
                    len(invalid), len(smiles), ", ".join(f"{k} {v}" for k, v in counts))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def _predict_chunk(loaded: list[Predictor], smiles: list, name: str) -> tuple[Any, list[dict]]:
    import pandas as pd
    from omegaconf import OmegaConf

    from acml_dist.evaluate.labelled import featurize_labelled

    meta = loaded[0].meta
    std_cfg = OmegaConf.create(meta.get("standardize") or {})
    schema = meta["model_cfg"].get("schema", "hu")
    data = featurize_labelled(pd.DataFrame({"smiles": smiles}), "smiles", [], "regression", name, schema,
                              std_cfg, report_invalid=False)  # fmt: skip
    out = pd.DataFrame({"error": pd.Series([None] * len(smiles), dtype=object)})
    for bad in data.invalid:
        out.loc[bad["row"], "error"] = bad["reason"]
    preds = np.zeros((len(loaded), 0, len(meta["targets"])))  # (predictors, molecules, targets)
    if data.graphs:
        features = raw_features(meta, data.smiles, progress=False)  # once for the whole ensemble
        preds = np.stack([predict_graphs(predictor, data.graphs, features) for predictor in loaded])
    for j, target in enumerate(meta["targets"]):
        out[f"pred_{target}"] = np.nan
        out.loc[data.source_rows, f"pred_{target}"] = preds[:, :, j].mean(axis=0)
        if len(loaded) > 1:
            out[f"pred_{target}_std"] = np.nan
            out.loc[data.source_rows, f"pred_{target}_std"] = preds[:, :, j].std(axis=0)
    return out, data.invalid


def predict_file(cfg: Any) -> dict:
    """`acml predict predictor=DIR input=FILE output=OUT.csv|.parquet`: one row per input row, in order,
    with the input's columns, `error` (why a row has no prediction) and `pred_<target>` (the mean over the
    predictors of an ensemble folder, with `pred_<target>_std` beside it)."""
    import pandas as pd

    from acml_dist.data.tables import read_input_table

    loaded = load_ensemble(predictor_folder(cfg))
    meta = loaded[0].meta
    table, column = read_input_table(cfg.input, cfg.smiles_column, "pred_")
    predicted = predict_frame(loaded, table[column].tolist(), Path(cfg.input).name)
    out = pd.concat([table.reset_index(drop=True), predicted], axis=1)
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".parquet":
        out.to_parquet(output, index=False)
    else:
        out.to_csv(output, index=False)
    done = int(predicted["error"].isna().sum())
    summary = {"rows": len(out), "predicted": done, "predictors": len(loaded)}
    print(f"predict: {len(out)} rows, {done} predicted, {len(out) - done} not ({meta['task']}, targets "
          f"{meta['targets']}, {len(loaded)} predictor(s)) -> {output}")  # fmt: skip
    return summary
