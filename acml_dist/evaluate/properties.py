"""Property-prediction benchmark for one labelled dataset (read by evaluate.labelled): split it, then for
each seed fine-tune the pretrained GIN, train the same GIN from scratch, and fit linear probes on frozen
pretrained and random-init embeddings."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.config.checks import check_recipe
from acml_dist.errors import DataError
from acml_dist.evaluate.chirality import prepare_encoder, prepare_graphs, tagged_fraction
from acml_dist.evaluate.finetuning import (
    EncoderView,
    LabelledSet,
    embed_graphs,
    linear_probe_task,
    main_metric,
    task_metrics,
)
from acml_dist.evaluate.fits import FitJob, encoder_width, run_fits
from acml_dist.evaluate.mol_features import features_with_progress
from acml_dist.evaluate.splits import check_split_classes, make_split
from acml_dist.log import get_logger

log = get_logger("evaluate")

METHODS = ("acml_finetune", "scratch_finetune", "acml_linear", "random_linear")


def schema_of(model: Any) -> str:
    """The atom/bond schema a model reads."""
    return str(getattr(model, "model_cfg", {}).get("schema", "hu"))


def fresh_like(model: Any, seed: int, emb_dim: int = 0, schema: str = ""):
    """The same architecture (at width `emb_dim`, with atom/bond `schema`, when given), randomly initialised
    with `seed`."""
    import torch

    cfg = dict(model.model_cfg)
    if emb_dim:
        cfg["emb_dim"] = int(emb_dim)
    if schema:
        cfg["schema"] = schema
    torch.manual_seed(seed)
    return type(model)(cfg, model.teacher_dims)


def train_mean_scores(data: LabelledSet, split: tuple[np.ndarray, ...]) -> dict[str, float]:
    """Test scores of predicting every test molecule as the training mean: the floor any model must beat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(data.y[split[0]], axis=0))
    return task_metrics(data.y[split[2]], np.tile(mean, (len(split[2]), 1)), data.task)


def _baseline_setup(model: Any, pretrained: Any, raw: LabelledSet, data: LabelledSet,
                    ecfg: Any) -> tuple[dict, dict, LabelledSet]:  # fmt: skip
    """({method: encoder width}, {method: atom/bond schema}, the molecules as the from-scratch baseline
    reads them: in its own schema when `eval.scratch_schema` differs, same order and split)."""
    emb_dim = encoder_width(EncoderView(pretrained), data.graphs)
    widths = {"acml_finetune": emb_dim, "scratch_finetune": int(ecfg.scratch_emb_dim) or emb_dim}
    widths.update(acml_linear=emb_dim, random_linear=emb_dim)
    own_schema = schema_of(model)
    schemas = dict.fromkeys(widths, own_schema)
    schemas["scratch_finetune"] = getattr(ecfg, "scratch_schema", "") or own_schema
    if schemas["scratch_finetune"] == own_schema:
        return widths, schemas, data
    graphs = prepare_graphs(raw.in_schema(schemas["scratch_finetune"]).graphs, ecfg.chirality)
    return widths, schemas, dataclasses.replace(data, graphs=graphs)


def _record_fits(
    fitted: list[dict], jobs: list[FitJob], fits: list, first_seed: int
) -> tuple[dict, list, dict]:
    """Each fit's test scores into its run record; (the first seed's curves by method, (seed, method, test
    indices, (n_test, targets) predictions) per fit, {seed: kept ACML predictor folder})."""
    curves: dict[str, list[dict]] = {}
    predictions, predictors = [], {}
    for record, job, fit in zip(fitted, jobs, fits):
        record.update(best_epoch=fit.best_epoch, **fit.test)
        predictions.append((job.seed, record["method"], job.split[2], fit.test_pred))
        if fit.predictor_dir is not None:
            predictors[job.seed] = fit.predictor_dir
        if job.seed == first_seed:
            curves[record["method"]] = fit.curve
    return curves, predictions, predictors


def run_property_task(
    model: Any,
    data: LabelledSet,
    ecfg: Any,
    split_kind: str,
    fractions: Any,
    fits_store: Path | None = None,
    keep_predictors: bool = False,
) -> dict:
    """All methods x seeds on one dataset (finished fits kept in and read from `fits_store`: `run_fits`).
    Returns {"summary": {method: {metric: (mean, std)}}, "runs": [per seed and method records], "curves":
    {seed0 method -> epoch records}, "split": sizes, "widths": {method: encoder width}, "schemas": {method:
    atom/bond schema}, "chirality": {mode, tagged share per split part}, "predictions": [(seed, method, test
    indices, test predictions) per fine-tuning fit], "predictors": {seed: folder of the fine-tuned ACML
    predictor in `fits_store`, with `keep_predictors`}}."""
    if len(data.graphs) < 10:
        raise DataError(f"{data.name}: only {len(data.graphs)} valid molecules, too few to split")
    check_recipe(ecfg, split_kind)
    mode = ecfg.chirality
    raw = data
    data = dataclasses.replace(data, graphs=prepare_graphs(data.graphs, mode))
    pretrained = prepare_encoder(copy.deepcopy(model), mode)
    widths, schemas, scratch_data = _baseline_setup(model, pretrained, raw, data, ecfg)
    pretrained_x = embed_graphs(EncoderView(pretrained), data.graphs)
    features = features_with_progress(data.smiles, str(getattr(ecfg, "mol_features", "")), ecfg.progress)
    runs: list[dict] = []
    jobs: list[FitJob] = []
    sizes: dict[str, int] = {}
    tagged: dict[str, float] = {}
    for seed in ecfg.seeds:
        split = make_split(data.smiles, split_kind, list(fractions), int(seed), data.parts)
        if data.task == "classification":
            check_split_classes(data.y, data.targets, split_kind, split)
        sizes = {"train": len(split[0]), "val": len(split[1]), "test": len(split[2])}
        if not tagged:
            tagged = {k: tagged_fraction([raw.graphs[i] for i in p]) for k, p in zip(sizes, split)}
        if ecfg.train_mean_floor and data.task == "regression":
            runs.append({"seed": int(seed), "method": "train_mean", **train_mean_scores(data, split)})
        encoders = {
            "acml_finetune": copy.deepcopy(pretrained),
            "scratch_finetune": prepare_encoder(
                fresh_like(model, int(seed), widths["scratch_finetune"], schemas["scratch_finetune"]), mode
            ),
        }
        for method, encoder in encoders.items():
            label = f"{data.name} seed {seed} {method} (width {widths[method]}, {schemas[method]} schema)"
            view = scratch_data if method == "scratch_finetune" else data
            is_acml = method == "acml_finetune"
            jobs.append(
                FitJob(
                    label, EncoderView(encoder), view, split, int(seed), is_acml, keep_predictors and is_acml
                )
            )
            runs.append({"seed": int(seed), "method": method})  # scores filled in when the fits are done
        if ecfg.linear_probe:
            random_x = embed_graphs(
                EncoderView(prepare_encoder(fresh_like(model, int(seed)), mode)), data.graphs
            )
            for method, x in (("acml_linear", pretrained_x), ("random_linear", random_x)):
                scores = linear_probe_task(x, data, split, int(seed))
                runs.append({"seed": int(seed), "method": method, **scores})
    fitted = [r for r in runs if r["method"] in ("acml_finetune", "scratch_finetune")]
    curves, predictions, predictors = _record_fits(fitted, jobs, run_fits(jobs, ecfg, features, fits_store),
                                                   int(ecfg.seeds[0]))  # fmt: skip
    metric, _ = main_metric(data.task)
    for seed in ecfg.seeds:
        done = [f"{r['method']} {metric}={r.get(metric, np.nan):.3f}" for r in runs if r["seed"] == seed]
        log.info("%s seed %s: %s", data.name, seed, ", ".join(done))
    return {
        "summary": summarise(runs),
        "paired": paired_comparison(runs, *main_metric(data.task)),
        "runs": runs,
        "curves": curves,
        "split": sizes,
        "widths": widths,
        "schemas": schemas,
        "chirality": {"mode": mode, "tagged": tagged},
        "predictions": predictions,
        "predictors": predictors,
    }


def summarise(runs: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """method -> metric -> (mean, std over seeds)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        records = [r for r in runs if r["method"] == method]
        metrics = [k for k in records[0] if k not in ("seed", "method", "best_epoch")]
        values = {m: np.array([r.get(m, np.nan) for r in records], dtype=float) for m in metrics}
        out[method] = {m: (float(np.nanmean(v)), float(np.nanstd(v))) for m, v in values.items()}
    return out


def paired_comparison(
    runs: list[dict], metric: str, higher: bool, a: str = "acml_finetune", b: str = "scratch_finetune"
) -> dict[str, Any] | None:
    """`a` against `b` seed by seed: each seed fits both on the same split, so the runs pair. The mean and
    sample std of the per-seed difference a - b, the seeds where `a` is better, and a paired t-test's
    two-sided p-value (scipy); the verdict names the better method only where p < 0.05, else says the seeds
    do not resolve it. None without a seed that has both."""
    from scipy.stats import ttest_rel

    scores: dict[Any, dict[str, float]] = {}
    for r in runs:
        if r["method"] in (a, b) and np.isfinite(r.get(metric, np.nan)):
            scores.setdefault(r["seed"], {})[r["method"]] = float(r[metric])
    pairs = np.array([(v[a], v[b]) for v in scores.values() if len(v) == 2], dtype=float).reshape(-1, 2)
    if not len(pairs):
        return None
    diff = pairs[:, 0] - pairs[:, 1]
    spread = float(np.std(diff, ddof=1)) if len(diff) > 1 else float("nan")
    p = float(ttest_rel(pairs[:, 0], pairs[:, 1]).pvalue) if len(diff) > 1 and spread > 0 else float("nan")
    verdict = f"not resolved by {len(diff)} seed{'s' * (len(diff) > 1)}"
    if p < 0.05:
        verdict = ("fine-tuned" if (diff.mean() > 0) == higher else "from scratch") + " better"
    wins = int((diff > 0).sum() if higher else (diff < 0).sum())
    return {"metric": metric, "seeds": len(diff), "mean_diff": float(diff.mean()), "std_diff": spread,
            "wins": wins, "p": p, "verdict": verdict}  # fmt: skip
