"""Property-prediction benchmark for one labelled dataset: load and featurise it (invalid SMILES rows are
counted and reported), split it, then for each seed fine-tune the pretrained GIN, train the same GIN from
scratch, and fit linear probes on frozen pretrained and random-init embeddings."""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.config.checks import check_recipe
from acml_dist.data.sources import match_column
from acml_dist.data.tables import read_molecule_table
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


def read_labelled_frame(data_cfg: Any, name: str | None = None, progress: bool = False):
    """(DataFrame, smiles column, target columns, task) from a registry name or `data.path` (any file
    `read_molecule_table` reads: CSV, TSV, Parquet, SDF)."""
    import pandas as pd

    if name is not None and not data_cfg.get("path"):
        from acml_dist.data.datasets import load_labelled
        from acml_dist.data.registry import LABELLED

        if name.lower() not in LABELLED:
            raise DataError(f"unknown dataset {name!r}: known {sorted(LABELLED)}, or pass data.path=FILE")
        frame, targets, task = load_labelled(name)  # the registry renames the SMILES column to `smiles`
        return frame, "smiles", list(targets), task
    path = Path(data_cfg.path)
    if not path.exists():
        raise FileNotFoundError(f"data.path {path} does not exist")
    frame = read_molecule_table(path, data_cfg.smiles_column, progress)
    smiles_col = match_column(list(frame.columns), data_cfg.smiles_column)
    if smiles_col is None:
        columns = list(frame.columns)
        raise DataError(f"data.smiles_column={data_cfg.smiles_column!r} is not a column of {path}: {columns}")
    targets = list(data_cfg.targets)
    if not targets:  # every numeric column but a row number; an ID column is numeric too: say what was taken
        numeric = [c for c in frame.columns if c != smiles_col and pd.api.types.is_numeric_dtype(frame[c])]
        row_numbers = [c for c in numeric if is_row_number(c, frame[c])]
        targets = [c for c in numeric if c not in row_numbers]
        left_out = f" (left out as row numbers: {row_numbers})" if row_numbers else ""
        log.warning("data.targets not given: every numeric column of %s is a target: %s%s", path.name,
                    targets, left_out)  # fmt: skip
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        raise DataError(f"data.targets {missing} are not columns of {path}: {list(frame.columns)}")
    task = data_cfg.task
    if task == "auto":
        task = infer_task(frame, targets)
        log.info("data.task not given: %s (data.task=regression|classification to choose)", task)
    return frame, smiles_col, targets, task


def is_row_number(name: Any, values: Any) -> bool:
    """A column that numbers the rows, not a label: a pandas index written to the file (`Unnamed: 0`,
    `index`, no name) or integers counting 0, 1, 2, ... or 1, 2, 3, ... down the file."""
    import pandas as pd

    if re.fullmatch(r"unnamed: \d+|index|", str(name).strip().lower()):
        return True
    if not pd.api.types.is_integer_dtype(values) or len(values) < 3:
        return False
    counted = values.to_numpy()
    return bool((counted == np.arange(len(counted)) + counted[0]).all() and counted[0] in (0, 1))


def infer_task(frame, targets: list[str]) -> str:
    """classification when every target has exactly two distinct labels, each 0/1 (booleans too) or a word
    (compared case-insensitively): 0/1, True/False, yes/no, BBB+/BBB-; else regression (two numbers such as
    0.5 / 1.5 are a regression target)."""

    def binary(column) -> bool:
        values, words = label_values(column)
        numbers = set(values.dropna().tolist())
        return numbers <= {0.0, 1.0} and len(numbers | set(words.tolist())) == 2

    return "classification" if targets and all(binary(frame[t]) for t in targets) else "regression"


# Two-valued text labels of a classification target, read case-insensitively; anything else must be 0/1, a
# sign pair (BBB+/BBB-, +/-) or a pair whose positive word `data.positive_label` names.
POSITIVE_LABELS = {"1", "true", "yes", "y", "t", "active", "positive", "pos"}
NEGATIVE_LABELS = {"0", "false", "no", "n", "f", "inactive", "negative", "neg"}


def label_values(column):
    """(numbers, words) of one label column: float64 numbers, NaN where missing or text (inf kept), and the
    text labels stripped and lower-cased, blanks dropped. The one reading of labels for task inference and
    for the label matrix."""
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce").astype(np.float64)
    words = column[values.isna() & column.notna()].astype(str).str.strip().str.lower()
    return values, words[words != ""]


def word_label_values(words: set[str], positive: str | None, where: str) -> dict[str, float]:
    """{word: 1.0 or 0.0} for the lower-cased text labels of one classification target. `positive` (any
    case) names the positive word of a pair; without it a known pair (yes/no, ...) or a sign pair (BBB+ /
    BBB-: the same stem ending in + and -) is read."""
    if positive is not None:
        positive = positive.strip().lower()
        if positive in words and len(words) <= 2:
            return {w: float(w == positive) for w in words}
        raise DataError(
            f"{where} has labels {sorted(words)[:5]}; data.positive_label={positive!r} needs a pair of "
            f"labels, one of them {positive!r}"
        )
    if words <= POSITIVE_LABELS | NEGATIVE_LABELS:
        return {w: float(w in POSITIVE_LABELS) for w in words}
    stems = {w[:-1] for w in words if w[-1:] in "+-"}
    if len(stems) == 1 and all(w[-1:] in "+-" for w in words):
        return {w: float(w.endswith("+")) for w in words}
    raise DataError(
        f"{where} has labels {sorted(words)[:5]}; use 0/1, a pair such as yes/no, active/inactive, "
        f"true/false, positive/negative or X+/X-, or name the positive one with data.positive_label=..."
    )


def label_matrix(frame, targets: list[str], task: str, name: str, positive: str | None = None) -> np.ndarray:
    """(rows, targets) float64 labels, NaN where missing. Classification columns may be 0/1, booleans or
    a pair of words (`word_label_values`); regression columns numeric. A target with no usable label at all,
    or a classification target with one class, is an error, not an empty result."""
    columns = []
    for target in targets:
        values, text = label_values(frame[target])
        infinite = np.isinf(values)
        if infinite.any():  # inf, or a number past float64 (1e400): no model can fit it
            log.warning("%s: %d non-finite values of %r read as missing", name, int(infinite.sum()), target)
            values = values.mask(infinite)
        if task == "classification" and len(text):
            mapping = word_label_values(set(text), positive, f"{name}: classification target {target!r}")
            values = values.where(values.notna(), text.map(mapping))
        elif len(text):
            log.warning("%s: %d non-numeric values of %r read as missing", name, len(text), target)
        if values.notna().sum() == 0:
            raise DataError(f"{name}: target {target!r} has no usable {task} labels")
        classes = values.dropna().unique()
        if task == "classification" and len(classes) == 1:
            raise DataError(
                f"{name}: classification target {target!r} has one class only ({classes[0]:g} in all "
                f"{values.notna().sum()} labelled rows): nothing to tell apart; leave it out of data.targets"
            )
        columns.append(values.to_numpy(dtype=np.float64))
    return np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))


def featurize_labelled(
    frame,
    smiles_col: str,
    targets: list[str],
    task: str,
    name: str,
    schema: str,
    std_cfg: Any,
    positive: str | None = None,
    progress: bool = False,
    report_invalid: bool = True,
) -> LabelledSet:
    """Standardise and featurise each row with acml_dist.chem; failed rows go to `invalid` with the reason
    (and their count to the log, unless the caller reports them itself: `report_invalid`). `progress`: a
    bar on stderr (~2-5 ms a molecule: a 100,000-row file is minutes)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from acml_dist.chem.featurize import mol_to_graph
    from acml_dist.chem.standardize import Reject, standardize
    from acml_dist.data.loader import graph_from_npz

    if task not in ("regression", "classification"):
        raise DataError(f"data.task must be regression or classification, got {task!r}")
    labels = label_matrix(frame, targets, task, name, positive)
    smiles, graphs, keep, invalid, arrays = [], [], [], [], []
    rows = tqdm(frame[smiles_col].tolist(), desc=f"{name}: featurise", unit="mol", disable=not progress)
    for row, value in enumerate(rows):
        text = "" if pd.isna(value) else str(value)
        # no SMILES at all: a blank cell, or an SDF record RDKit could not read (its reason was logged)
        result = Reject("missing") if pd.isna(value) else standardize(text, std_cfg)
        mol = getattr(result, "mol", None)
        if mol is None:
            invalid.append({"row": row, "input": text, "reason": str(getattr(result, "reason", "invalid"))})
            continue
        arrays.append(mol_to_graph(mol, getattr(result, "hint", None)))
        graphs.append(graph_from_npz(arrays[-1], schema))
        smiles.append(getattr(result, "smiles", text))
        keep.append(row)
    y = labels[keep] if keep else np.zeros((0, len(targets)))
    if task == "classification":
        bad = ~np.isnan(y) & ~np.isin(y, (0.0, 1.0))
        if bad.any():
            found = np.unique(y[bad])
            raise DataError(f"{name}: classification targets must be 0/1 (or empty), found {found}")
    if invalid and report_invalid:
        counts = Counter(str(r["reason"]).split(":")[0] for r in invalid).most_common()
        reasons = ", ".join(f"{k} {v}" for k, v in counts)
        log.warning("%s: %d of %d rows not used (%s; each listed with its reason)", name, len(invalid),
                    len(frame), reasons)  # fmt: skip
    return LabelledSet(
        name, task, list(targets), smiles, graphs, y, len(frame), invalid, arrays, source_rows=keep
    )


def load_labelled_set(data_cfg: Any, name: str | None, schema: str, progress: bool = False) -> LabelledSet:
    frame, smiles_col, targets, task = read_labelled_frame(data_cfg, name, progress)
    label = name or Path(data_cfg.path).stem
    if data_cfg.get("limit"):
        frame = frame.head(int(data_cfg.limit))
    positive = data_cfg.get("positive_label")
    return featurize_labelled(
        frame, smiles_col, targets, task, label, schema, data_cfg.standardize, positive, progress
    )


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
        split = make_split(data.smiles, split_kind, list(fractions), int(seed))
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
