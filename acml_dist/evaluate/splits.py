"""Train/validation/test splits for labelled datasets.

`scaffold_split` is the deterministic Bemis-Murcko split of MoleculeNet/chemprop: molecules are grouped by
scaffold, the groups are ordered largest first (ties: first appearance) and filled into train, then
validation, then test, so test scaffolds never occur in training. Seeds do not change it; they change the
model's initialisation. `balanced_scaffold_split` is chemprop's balanced variant: scaffold sets larger
than half the validation or test size go to training first (in seeded order), the rest follow in seeded
random order, so the seed changes which small scaffolds are held out while scaffolds never cross parts.
`random_split` is a seeded permutation. `column_split` is the file's own split, as its split column names
each row's part (`data.split=column`): the same for every seed."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from acml_dist.config.eval import SPLIT_KINDS
from acml_dist.errors import DataError
from acml_dist.log import get_logger

log = get_logger("evaluate")


def murcko_scaffold(smiles: str) -> str:
    """Generic-free Bemis-Murcko scaffold SMILES ("" for acyclic or unparsable molecules)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return ""
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


SPLITS = SPLIT_KINDS


def scaffold_groups(smiles: list[str]) -> list[list[int]]:
    """Indices grouped by Murcko scaffold, in order of first appearance."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, smi in enumerate(smiles):
        groups[murcko_scaffold(smi)].append(i)
    return list(groups.values())


def _fill(
    ordered: list[list[int]], n: int, fractions, cumulative: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole scaffold groups into train until full, then validation until full, the rest into test.
    `cumulative`: DeepChem's rule (train + val <= (f_train + f_val) n, so validation absorbs what train left
    unfilled); else chemprop's (val <= f_val n)."""
    train_size, val_size = fractions[0] * n, fractions[1] * n
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for group in ordered:
        if len(train) + len(group) <= train_size:
            train += group
        elif len(val) + len(group) <= (train_size + val_size - len(train) if cumulative else val_size):
            val += group
        else:
            test += group
    return tuple(np.asarray(part, dtype=np.int64) for part in (train, val, test))  # type: ignore[return-value]


def scaffold_split(
    smiles: list[str], fractions: list[float] | tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic scaffold split; `seed` is accepted for a uniform signature and ignored."""
    del seed
    ordered = sorted(scaffold_groups(smiles), key=lambda g: (-len(g), g[0]))
    return _fill(ordered, len(smiles), fractions, cumulative=True)


def balanced_scaffold_split(
    smiles: list[str], fractions: list[float] | tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """chemprop's `scaffold_balanced`: big scaffold sets (more than half the validation or test size) first,
    each kind in an order shuffled by `seed`; then the same greedy fill as the deterministic split."""
    n = len(smiles)
    val_size, test_size = fractions[1] * n, (1 - fractions[0] - fractions[1]) * n
    big, small = [], []
    for group in scaffold_groups(smiles):
        (big if len(group) > val_size / 2 or len(group) > test_size / 2 else small).append(group)
    rng = np.random.default_rng(seed)
    ordered = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
    return _fill(ordered, n, fractions, cumulative=False)


def random_split(
    n: int, fractions: list[float] | tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(round(fractions[0] * n)), int(round((fractions[0] + fractions[1]) * n))
    return order[:a], order[a:b], order[b:]


# What a split column may say, in any case: each word's part (0 train, 1 validation, 2 test).
PART_WORDS = dict(train=0, training=0, valid=1, val=1, validation=1, dev=1, test=2, testing=2)


def column_split(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the molecules whose split-column value names train, validation and test (`PART_WORDS`);
    any other value (an empty cell too) is an error that names it."""
    import pandas as pd

    found = [PART_WORDS.get(str(v).strip().lower()) if not pd.isna(v) else None for v in parts]
    unknown = Counter("(empty)" if pd.isna(v) else str(v) for v, k in zip(parts, found) if k is None)
    if unknown:
        raise DataError(
            f"split column values that name no part: {dict(unknown.most_common(5))} ({sum(unknown.values())} "
            f"molecules); use train / valid / test (also training, val, validation, dev, testing)"
        )
    index = np.asarray(found, dtype=np.int64)
    return np.flatnonzero(index == 0), np.flatnonzero(index == 1), np.flatnonzero(index == 2)


def make_split(
    smiles: list[str],
    kind: str,
    fractions: list[float] | tuple[float, ...],
    seed: int,
    parts: list | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices of the molecules by `kind` (`parts`: each molecule's split-column
    value, for `column`)."""
    if kind == "column":
        if parts is None or len(parts) != len(smiles):
            raise DataError("split=column needs each molecule's part from the file's split column")
        split = column_split(parts)
        check_split(smiles, kind, (0.0, 0.0, 0.0), split)  # the file sets the shares: only emptiness counts
        return split
    if kind == "scaffold":
        parts = scaffold_split(smiles, fractions, seed)
    elif kind == "scaffold_balanced":
        parts = balanced_scaffold_split(smiles, fractions, seed)
    elif kind == "random":
        parts = random_split(len(smiles), fractions, seed)
    else:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {kind!r}")
    check_split(smiles, kind, fractions, parts)
    return parts


def check_split(smiles: list[str], kind: str, fractions, parts: tuple[np.ndarray, ...]) -> None:
    """A split nothing can be learnt or scored on (under 2 training molecules, an empty validation or test
    part) is an error; a training part under half its share is a warning. Both name the cause: whole
    scaffold sets move together, so one set larger than the training share (often the acyclic molecules,
    scaffold "") pushes most molecules out of training."""
    n, sizes = len(smiles), [len(p) for p in parts]
    train_share = fractions[0] * n
    if sizes[0] >= 2 and min(sizes[1:]) > 0 and sizes[0] >= train_share / 2:
        return
    cause = ""
    if kind.startswith("scaffold"):
        largest = max(scaffold_groups(smiles), key=len)
        scaffold = murcko_scaffold(smiles[largest[0]]) or "none (acyclic)"
        cause = (f"; the largest scaffold set ({len(largest)} molecules, scaffold {scaffold}) moves as one "
                 f"and the training share is {train_share:.0f}: data.split=random mixes them")  # fmt: skip
    message = f"{kind} split of {n} molecules into train / validation / test: {' / '.join(map(str, sizes))}"
    if sizes[0] < 2 or min(sizes[1:]) == 0:
        raise DataError(f"{message}, nothing to learn or score{cause}")
    log.warning("%s, training on under half the intended share%s", message, cause)


def check_split_classes(y: np.ndarray, targets: list[str], kind: str, parts: tuple[np.ndarray, ...]) -> None:
    """Classification: a validation or test part where no target has both classes cannot be scored (ROC-AUC
    is undefined, the best epoch could not be chosen): an error. A target with one class in a part is left
    out of that part's scores (`task_metrics`): a warning naming it."""
    for part, rows in zip(("validation", "test"), parts[1:]):
        labels = y[rows]
        classes = [np.unique(labels[~np.isnan(labels[:, j]), j]) for j in range(len(targets))]
        one_class = [t for t, c in zip(targets, classes) if len(c) < 2]
        if len(one_class) == len(targets):
            raise DataError(
                f"the {part} part of the {kind} split ({len(rows)} molecules) holds fewer than two classes "
                f"for every target: nothing to score; data.split=random mixes the classes; or more molecules"
            )
        if one_class:
            log.warning("%s part of the %s split: fewer than two classes for %s (left out of its scores)",
                        part, kind, one_class)  # fmt: skip
