"""`acml predict`: the predictors `acml finetune` kept (evaluate.predictors) applied to a molecule file, its
molecules taking the fine-tuning route (`featurize_labelled`: the same standardisation and graphs). The
same predictions for a DataFrame (`predict_frame`) serve the registered pyfunc (evaluate.predictor_pyfunc)."""

from __future__ import annotations

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
    from acml_dist.evaluate.predictor_pyfunc import predictors_in_model
    from acml_dist.tracking import download, is_mlflow_uri, use_store_for

    if not is_mlflow_uri(str(cfg.predictor)):
        return Path(cfg.predictor)
    use_store_for(cfg, str(cfg.predictor))
    local = download(str(cfg.predictor))
    return predictors_in_model(local, str(cfg.predictor)) if (local / "MLmodel").exists() else local


def predict_frame(loaded: list[Predictor], smiles: list, name: str = "input", progress: bool = True) -> Any:
    """One row per SMILES, in order: `error` (why a row has no prediction; None when it has one) and
    `pred_<target>` (the ensemble's mean, with `pred_<target>_std` beside it for more than one predictor)."""
    import pandas as pd
    from omegaconf import OmegaConf

    from acml_dist.evaluate.properties import featurize_labelled

    meta = loaded[0].meta
    table = pd.DataFrame({"smiles": smiles})
    std_cfg = OmegaConf.create(meta.get("standardize") or {})
    data = featurize_labelled(table, "smiles", [], "regression", name, meta["model_cfg"].get("schema", "hu"),
                              std_cfg, progress=progress)  # fmt: skip
    features = raw_features(meta, data.smiles, progress)  # once for the whole ensemble
    preds = np.stack([predict_graphs(predictor, data.graphs, features) for predictor in loaded])
    out = pd.DataFrame({"error": pd.Series([None] * len(table), dtype=object)})
    for bad in data.invalid:
        out.loc[bad["row"], "error"] = bad["reason"]
    for j, target in enumerate(meta["targets"]):
        out[f"pred_{target}"] = np.nan
        out.loc[data.source_rows, f"pred_{target}"] = preds[:, :, j].mean(axis=0)
        if len(loaded) > 1:
            out[f"pred_{target}_std"] = np.nan
            out.loc[data.source_rows, f"pred_{target}_std"] = preds[:, :, j].std(axis=0)
    return out


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
