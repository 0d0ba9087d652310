"""Molecule-level input features for property models: RDKit's 2-D descriptors (chemprop's
`rdkit_2d` features generator, the published D-MPNN's extra features), concatenated with a graph
embedding before the property head (`evaluate/finetuning.py`, `eval.mol_features`). Raw values here;
the fine-tuning run normalises them on its training split."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

FEATURE_SETS = ("", "rdkit2d")  # "": none


def descriptor_names() -> list[str]:
    """The names of RDKit's 2-D descriptors, in the order `rdkit_2d` returns them (217 in RDKit 2026.09)."""
    from rdkit.Chem import Descriptors

    return [name for name, _ in Descriptors._descList]


def rdkit_2d(smiles: Sequence[str]) -> np.ndarray:
    """(n, descriptors) float64 of the molecules' RDKit 2-D descriptors; NaN where RDKit cannot compute one
    (or gives inf), and a whole row of NaN for a SMILES that does not parse."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Descriptors

    names = descriptor_names()
    out = np.full((len(smiles), len(names)), np.nan)
    RDLogger.DisableLog("rdApp.*")  # a descriptor that fails on one molecule says so per molecule
    try:
        for i, text in enumerate(smiles):
            mol = Chem.MolFromSmiles(text)
            if mol is None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy warnings inside some descriptors (e.g. on 1 atom)
                values = Descriptors.CalcMolDescriptors(mol, missingVal=np.nan)
            out[i] = [values.get(name, np.nan) for name in names]
    finally:
        RDLogger.EnableLog("rdApp.*")
    out[~np.isfinite(out)] = np.nan
    return out


def feature_names(kind: str) -> list[str]:
    """The column names of the feature set `kind`, in order (none for "")."""
    return descriptor_names() if kind == "rdkit2d" else []


def molecule_features(smiles: Sequence[str], kind: str) -> np.ndarray | None:
    """The feature set `kind` (one of FEATURE_SETS) of the molecules; None for "" (no features)."""
    if kind not in FEATURE_SETS:
        raise ValueError(f"molecule features must be one of {FEATURE_SETS}, got {kind!r}")
    return rdkit_2d(smiles) if kind == "rdkit2d" else None
