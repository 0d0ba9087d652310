"""`acml predict`: the predictors `acml finetune` kept (evaluate.predictors) applied to a molecule file, its
molecules taking the fine-tuning route (`featurize_labelled`: the same standardisation and graphs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.errors import DataError
from acml_dist.evaluate.predictors import load_predictor, predict_graphs, predictor_dirs, raw_features


def predictor_folder(cfg: Any) -> Path:
    """`cfg.predictor` as a local folder: a path as it is; an MLflow URI (as `acml finetune` logs them:
    `runs:/<run id>/finetune/predictors`) downloaded from the job's store."""
    from acml_dist.tracking import download, is_mlflow_uri, use_store_for

    if not is_mlflow_uri(str(cfg.predictor)):
        return Path(cfg.predictor)
    use_store_for(cfg, str(cfg.predictor))
    return download(str(cfg.predictor))


def predict_file(cfg: Any) -> dict:
    """`acml predict predictor=DIR input=FILE output=OUT.csv|.parquet`: one row per input row, in order,
    with the input's columns, `error` (why a row has no prediction) and `pred_<target>` (the mean over the
    predictors of an ensemble folder, with `pred_<target>_std` beside it)."""
    from omegaconf import OmegaConf

    from acml_dist.data.tables import read_input_table
    from acml_dist.evaluate.properties import featurize_labelled

    loaded = [load_predictor(d) for d in predictor_dirs(predictor_folder(cfg))]
    meta = loaded[0].meta
    for other in loaded[1:]:
        same = ("task", "targets", "standardize", "model_cfg", "mol_features", "feature_names")
        if any(other.meta.get(k) != meta.get(k) for k in same):
            raise DataError(f"{cfg.predictor}: its predictors differ in task, targets or inputs")
    table, column = read_input_table(cfg.input, cfg.smiles_column, "pred_")
    std_cfg = OmegaConf.create(meta.get("standardize") or {})
    data = featurize_labelled(table, column, [], "regression", Path(cfg.input).name,
                              meta["model_cfg"].get("schema", "hu"), std_cfg, progress=True)  # fmt: skip
    features = raw_features(meta, data.smiles)  # once for the whole ensemble
    preds = np.stack([predict_graphs(predictor, data.graphs, features) for predictor in loaded])
    out = table.reset_index(drop=True).copy()
    out["error"] = None
    for bad in data.invalid:
        out.loc[bad["row"], "error"] = bad["reason"]
    for j, target in enumerate(meta["targets"]):
        out[f"pred_{target}"] = np.nan
        out.loc[data.source_rows, f"pred_{target}"] = preds[:, :, j].mean(axis=0)
        if len(loaded) > 1:
            out[f"pred_{target}_std"] = np.nan
            out.loc[data.source_rows, f"pred_{target}_std"] = preds[:, :, j].std(axis=0)
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".parquet":
        out.to_parquet(output, index=False)
    else:
        out.to_csv(output, index=False)
    summary = {"rows": len(out), "predicted": len(data.source_rows), "predictors": len(loaded)}
    print(f"predict: {summary['rows']} rows, {summary['predicted']} predicted, {len(data.invalid)} not "
          f"({meta['task']}, targets {meta['targets']}, {len(loaded)} predictor(s)) -> {output}")  # fmt: skip
    return summary
