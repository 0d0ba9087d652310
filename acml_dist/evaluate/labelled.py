"""A labelled molecule file (or a registered dataset) read into a `LabelledSet`: the SMILES and label
columns, the labels (numbers, booleans or word pairs), the task, each row standardised and featurised through
acml_dist.chem (invalid rows counted with their reason), and the file's own split when it has one. The one
route for `acml finetune`, `acml evaluate`'s property sets and `acml predict`."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.data.sources import match_column
from acml_dist.data.tables import read_molecule_table
from acml_dist.errors import DataError
from acml_dist.evaluate.finetuning import LabelledSet
from acml_dist.log import get_logger

log = get_logger("evaluate")


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
    data = featurize_labelled(
        frame, smiles_col, targets, task, label, schema, data_cfg.standardize, positive, progress
    )
    if data_cfg.get("split") == "column":  # the file's own split: each kept molecule's part, as written
        column = match_column(list(frame.columns), str(data_cfg.split_column))
        if column is None:
            raise DataError(f"data.split=column: data.split_column={data_cfg.split_column!r} is not a column "
                            f"of {label}: {list(frame.columns)}")  # fmt: skip
        data.parts = frame[column].iloc[data.source_rows].tolist()
    return data
