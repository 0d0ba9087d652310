"""Fine-tuned predictors in the MLflow model registry. `acml finetune ... register=NAME` logs the seeds'
predictors (evaluate.predictors: safetensors + JSON) as a `loader_module` pyfunc whose loader is this module
(nothing pickled) and registers a new version of NAME, so that

    mlflow.pyfunc.load_model("models:/NAME/1").predict(pd.DataFrame({"smiles": [...]}))

and `mlflow models serve -m models:/NAME/1 --env-manager local` predict as `acml predict` does (one row per
input: `error`, `pred_<target>`, and `pred_<target>_std` for several seeds). `acml predict
predictor=models:/NAME/1` reads the same registered version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from acml_dist.evaluate.predictors import LOADER_MODULE  # this module, as MLflow records it
from acml_dist.log import get_logger

log = get_logger("register")


class PredictorModel:
    """The registered predictors, loaded: `predict(DataFrame with a smiles column, or a list of SMILES)`."""

    def __init__(self, folder: Path) -> None:
        from acml_dist.evaluate.predict_job import load_ensemble

        self.loaded = load_ensemble(folder)

    def predict(self, model_input: Any, params: Optional[dict[str, Any]] = None) -> Any:
        import pandas as pd

        from acml_dist.data.sources import match_column
        from acml_dist.evaluate.predict_job import predict_frame

        if isinstance(model_input, pd.DataFrame):
            column = match_column(list(model_input.columns), "smiles")
            if column is None:
                raise ValueError(f"input needs a 'smiles' column (columns: {list(model_input.columns)})")
            values = model_input[column].tolist()
        else:
            values = list(model_input)
        out = predict_frame(self.loaded, values, progress=False)
        # None, not NaN, where a row has no prediction: the served answer stays strict JSON (null, not NaN)
        return out.astype(object).where(out.notna(), None)


def _load_pyfunc(data_path: str, model_config: Any = None) -> PredictorModel:
    """MLflow's entry point for a `loader_module` pyfunc: `data_path` is the predictors folder it stored."""
    return PredictorModel(Path(data_path))


def register_predictors(folder: Path, name: str, tags: dict[str, Any]) -> int:
    """Log the predictors in `folder` (every seed) into the active MLflow run as a pyfunc, register a new
    version of `name` tagged with `tags` (task, targets, test metrics) and return its number."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from acml_dist.evaluate.predictors import META, predictor_dirs

    seeds = predictor_dirs(folder)  # what the outputs are: the JSON says, no weights loaded for it
    meta, several = json.loads((seeds[0] / META).read_text()), len(seeds) > 1
    outputs = [ColSpec("string", "error", required=False)]
    for target in meta["targets"]:
        outputs.append(ColSpec("double", f"pred_{target}", required=False))
        if several:
            outputs.append(ColSpec("double", f"pred_{target}_std", required=False))
    info = mlflow.pyfunc.log_model(
        name="predictor",
        loader_module=LOADER_MODULE,  # code that ships with the package, not a pickle
        data_path=str(folder),  # seed<k>/weights.safetensors + predictor.json
        signature=ModelSignature(
            inputs=Schema([ColSpec(AnyType(), "smiles", required=False)]), outputs=Schema(outputs)
        ),  # fmt: skip
        # MLflow loads the logged model and predicts these before registering it: a broken one fails here.
        input_example=pd.DataFrame({"smiles": ["CCO", "c1ccccc1C(=O)O"]}),
        registered_model_name=name,
        pip_requirements=["acml-dist", "torch", "torch-geometric", "rdkit", "numpy", "pandas", "safetensors"],
    )
    version = int(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value)[:5000])
    log.info("registered the fine-tuned predictors as models:/%s/%d", name, version)
    return version
