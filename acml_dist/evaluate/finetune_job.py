"""The `acml finetune` job: fine-tune a pretrained GIN on any labelled CSV (or a registry dataset) against
the same GIN from scratch and linear probes, with the evaluate job's report and MLflow logging. (Not named
finetune.py: a submodule of that name would shadow the package's `finetune()` once imported.)"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from acml_dist.config.checks import check_recipe
from acml_dist.errors import ConfigError
from acml_dist.evaluate import report
from acml_dist.evaluate.fits import recipe_kwargs
from acml_dist.evaluate.labelled import load_labelled_set
from acml_dist.evaluate.outputs import log_to_mlflow, output_dir, write_report
from acml_dist.evaluate.properties import schema_of
from acml_dist.evaluate.run import cpu_threads, load, mlflow_run, property_metrics, run_dataset
from acml_dist.log import get_logger

log = get_logger("evaluate")


def run_finetune(cfg: Any) -> dict:
    import pandas as pd

    check_recipe(cfg.eval, cfg.data.split)
    if cfg.register and not cfg.tracking.enabled:
        raise ConfigError(f"register={cfg.register} needs MLflow: drop tracking.enabled=false")
    model, model_dir = load(cfg)
    out = output_dir(cfg, "finetune")
    name = None if cfg.data.get("path") else cfg.data.source
    data = load_labelled_set(cfg.data, name, schema_of(model), progress=cfg.eval.progress)
    pd.DataFrame(data.invalid, columns=["row", "input", "reason"]).to_csv(
        out / "invalid_rows.csv", index=False
    )
    with cpu_threads(cfg.eval.num_threads), mlflow_run(cfg, f"finetune-{cfg.name}") as run:
        result = run_dataset(model, data, cfg.eval, cfg.data.split, cfg.data.split_fractions, out, True)
        kept = export_predictors(result["predictors"], out / "predictors", cfg)
        metrics = {
            "rows": data.rows,
            "valid_rows": len(data.graphs),
            "invalid_rows": len(data.invalid),
            "missing_labels": data.missing_labels,
            **property_metrics("", result),
        }
        pd.DataFrame(result["runs"]).to_csv(out / "runs.csv", index=False)
        predictions_table(data, result["predictions"]).to_csv(out / "predictions.csv", index=False)
        invalid = "\n".join(f"- row {r['row']}: `{r['input']}` ({r['reason']})" for r in data.invalid[:50])
        sections = [
            f"# Fine-tuning `{data.name}` ({data.task}, targets {data.targets})\n\nModel `{cfg.model}`.",
            report.property_report(
                {data.name: result}, {}, cfg.eval, cfg.data.split, cfg.data.split_fractions
            ).replace("## Property prediction", "## Results"),
            f"Rows not used: invalid SMILES or rejected by standardisation ({len(data.invalid)}, "
            f"in invalid_rows.csv):\n\n{invalid or 'none'}",
        ]
        write_report(out, sections, metrics, OmegaConf.create({"report": None}))
        params = {"model": cfg.model, "data": cfg.data.get("path") or name, "split": cfg.data.split}
        params.update(recipe_kwargs(cfg.eval), chirality=cfg.eval.chirality, scratch_width=result["widths"],
                      mol_features=cfg.eval.mol_features or "none")  # fmt: skip
        log_to_mlflow(run, metrics, out, params)
        registered = register(cfg, out / "predictors", data, metrics) if cfg.register and kept else None
    caption = (
        f"{data.task}, {cfg.data.split} split, seeds {list(cfg.eval.seeds)}, test set; "
        f"{len(data.graphs)} of {data.rows} rows used; report {out / 'report.md'}"
    )
    report.print_property_table(f"acml finetune {data.name}", data.name, result, caption)
    if kept:
        print(f"fine-tuned predictors ({kept} seeds): acml predict predictor={out / 'predictors'} input=FILE "
              f"output=OUT.csv")  # fmt: skip
    if registered:
        print(f"registered: {registered} (mlflow.pyfunc.load_model({registered!r}).predict(DataFrame"
              f"[smiles]), or acml predict predictor={registered})")  # fmt: skip
    return metrics


def register(cfg: Any, folder: Any, data: Any, metrics: dict) -> str:
    """The exported predictors registered as a new version of `cfg.register`; its `models:/` URI."""
    import json

    from acml_dist.evaluate.predictor_pyfunc import register_predictors

    tags = {"task": data.task, "targets": json.dumps(list(data.targets)), "encoder": cfg.model,
            "data": cfg.data.get("path") or data.name, "split": cfg.data.split,
            "seeds": json.dumps(list(cfg.eval.seeds))}  # fmt: skip
    tags.update({k: v for k, v in metrics.items() if k.startswith("acml_finetune_")})
    version = register_predictors(folder, cfg.register, tags)
    return f"models:/{cfg.register}/{version}"


def export_predictors(fit_dirs: dict, out: Any, cfg: Any) -> int:
    """Each seed's kept predictor from the fits store into `out`/seed<k>, with the standardisation its
    molecules went through; the number exported. A fit read back from a store written before predictors
    were kept has none: said, not an error."""
    import shutil

    from acml_dist.evaluate.predictors import META, export_predictor

    shutil.rmtree(out, ignore_errors=True)  # no seed of an earlier run left beside this run's
    standardize = OmegaConf.to_container(cfg.data.standardize, resolve=True)
    kept = 0
    for seed, fit_dir in sorted(fit_dirs.items()):
        if not (fit_dir / META).exists():
            log.warning("seed %s: no fine-tuned predictor kept (fitted before they were; delete %s to refit)",
                        seed, fit_dir.parent)  # fmt: skip
            continue
        export_predictor(fit_dir, out / f"seed{seed}", {"standardize": standardize, "seed": int(seed)})
        kept += 1
    return kept


def predictions_table(data: Any, predictions: list) -> Any:
    """The test molecules' predictions, one row per seed and molecule: `seed`, `row` (its row in the input
    file, from 0, as in invalid_rows.csv), `smiles` (standardised), `label_<target>` and
    `pred_<method>_<target>` for each fine-tuned method (label units; probabilities for classification)."""
    import numpy as np
    import pandas as pd

    frames: dict[int, Any] = {}
    for seed, method, test, pred in predictions:
        if seed not in frames:
            rows = np.asarray(data.source_rows)[test] if data.source_rows else test
            columns = {"seed": seed, "row": rows, "smiles": [data.smiles[i] for i in test]}
            columns.update({f"label_{t}": data.y[test, j] for j, t in enumerate(data.targets)})
            frames[seed] = pd.DataFrame(columns)
        for j, target in enumerate(data.targets):
            frames[seed][f"pred_{method}_{target}"] = np.asarray(pred)[:, j]
    return pd.concat(frames.values(), ignore_index=True) if frames else pd.DataFrame()
