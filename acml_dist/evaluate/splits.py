"""Train/validation/test splits for labelled datasets.

`scaffold_split` is the deterministic Bemis-Murcko split of MoleculeNet/chemprop: molecules are grouped by
scaffold, the groups are ordered largest first (ties: first appearance) and filled into train, then
validation, then test, so test scaffolds never occur in training. Seeds do not change it; they change the
model's initialisation. `random_split` is a seeded permutation."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from acml_dist.errors import DataError


def murcko_scaffold(smiles: str) -> str:
    """Generic-free Bemis-Murcko scaffold SMILES ("" for acyclic or unparsable molecules)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return ""
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_split(
    smiles: list[str], fractions: list[float] | tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic scaffold split; `seed` is accepted for a uniform signature and ignored."""
    del seed
    groups: dict[str, list[int]] = defaultdict(list)
    for i, smi in enumerate(smiles):
        groups[murcko_scaffold(smi)].append(i)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    n = len(smiles)
    train_cut, val_cut = fractions[0] * n, (fractions[0] + fractions[1]) * n
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for group in ordered:
        if len(train) + len(group) <= train_cut:
            train += group
        elif len(train) + len(val) + len(group) <= val_cut:
            val += group
        else:
            test += group
    return tuple(np.asarray(part, dtype=np.int64) for part in (train, val, test))  # type: ignore[return-value]


def random_split(
    n: int, fractions: list[float] | tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(round(fractions[0] * n)), int(round((fractions[0] + fractions[1]) * n))
    return order[:a], order[a:b], order[b:]


def make_split(
    smiles: list[str], kind: str, fractions: list[float] | tuple[float, ...], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind == "scaffold":
        return scaffold_split(smiles, fractions, seed)
    if kind == "random":
        return random_split(len(smiles), fractions, seed)
    raise DataError(f"split must be scaffold or random, got {kind!r}")
