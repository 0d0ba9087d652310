"""Chemical semantics: linear probes from embeddings to RDKit descriptors and functional-group presence.

A probe is a linear model fit by cross-validation (RidgeCV inside K-fold for descriptors, scored by R^2;
logistic regression inside stratified K-fold for functional groups, scored by ROC-AUC), so a score says how
much of the property is linearly readable from the embedding."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def _descriptor_functions() -> dict[str, Callable]:
    from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

    return {
        "logP": Crippen.MolLogP,
        "TPSA": rdMolDescriptors.CalcTPSA,
        "MW": Descriptors.MolWt,
        "rings": rdMolDescriptors.CalcNumRings,
        "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
        "HBD": rdMolDescriptors.CalcNumHBD,
        "HBA": rdMolDescriptors.CalcNumHBA,
        "fraction_sp3": rdMolDescriptors.CalcFractionCSP3,
    }


# RDKit fragment counters (rdkit.Chem.Fragments) probed as presence/absence.
FUNCTIONAL_GROUPS: dict[str, str] = {
    "alcohol": "fr_Al_OH",
    "phenol": "fr_phenol",
    "carboxylic_acid": "fr_COO",
    "ester": "fr_ester",
    "amide": "fr_amide",
    "ether": "fr_ether",
    "ketone": "fr_ketone",
    "primary_amine": "fr_NH2",
    "aniline": "fr_aniline",
    "nitrile": "fr_nitrile",
    "nitro": "fr_nitro",
    "halogen": "fr_halogen",
    "sulfonamide": "fr_sulfonamd",
    "benzene": "fr_benzene",
    "pyridine": "fr_pyridine",
    "urea": "fr_urea",
}


def descriptor_frame(smiles: list[str]) -> pd.DataFrame:
    """One row per SMILES: descriptors and 0/1 functional-group columns (`fg_<name>`); NaN if unparsable."""
    from rdkit import Chem
    from rdkit.Chem import Fragments

    funcs = _descriptor_functions()
    rows = []
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            rows.append({})
            continue
        row = {name: float(f(mol)) for name, f in funcs.items()}
        for name, frag in FUNCTIONAL_GROUPS.items():
            row[f"fg_{name}"] = float(getattr(Fragments, frag)(mol) > 0)
        rows.append(row)
    columns = list(funcs) + [f"fg_{n}" for n in FUNCTIONAL_GROUPS]
    return pd.DataFrame(rows, columns=columns)


def linear_probe(x: np.ndarray, y: np.ndarray, task: str, *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated score of a linear probe: R^2 (regression) or ROC-AUC (classification); NaN if unfit."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = ~np.isnan(y)
    x, y = np.asarray(x, dtype=np.float64)[keep], y[keep]
    if task == "classification":
        counts = np.bincount(y.astype(int), minlength=2)
        n_folds = int(min(folds, counts.min()))
        if n_folds < 2:
            return float("nan")  # a class too rare to cross-validate
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        return float(cross_val_score(model, x, y.astype(int), cv=cv, scoring="roc_auc").mean())
    if len(y) < 2 * folds or np.std(y) == 0:
        return float("nan")
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    cv = KFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, y, cv=cv, scoring="r2").mean())


def probe_table(
    embeddings: dict[str, np.ndarray], smiles: list[str], *, folds: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Rows = probed properties, columns = `kind`, `metric` and one score column per embedding source.

    All sources are probed on the same molecules (rows of `smiles`, aligned with every embedding)."""
    targets = descriptor_frame(smiles)
    rows = []
    for column in targets.columns:
        y = targets[column].to_numpy(dtype=np.float64)
        task = "classification" if column.startswith("fg_") else "regression"
        row: dict[str, object] = {
            "property": column.removeprefix("fg_"),
            "kind": "functional group" if task == "classification" else "descriptor",
            "metric": "ROC-AUC" if task == "classification" else "R2",
        }
        if task == "classification":
            row["prevalence"] = float(np.nanmean(y))
        for source, x in embeddings.items():
            row[source] = linear_probe(x, y, task, folds=folds, seed=seed)
        rows.append(row)
    return pd.DataFrame(rows)
