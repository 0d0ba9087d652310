"""Molecule-level features the property head reads beside the embedding (`eval.mol_features`): computed by
`chem.descriptors` with a progress bar, and normalised on a fit's training rows by a `FeatureScaler`, which
a kept predictor saves (plain arrays) so that `acml predict` normalises new molecules the same way."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from acml_dist.chem.descriptors import molecule_features

SCALER_FILE = "features.safetensors"  # a kept predictor's FeatureScaler, beside its weights


def features_with_progress(smiles: list[str], kind: str, progress: bool = True) -> np.ndarray | None:
    """`chem.descriptors.molecule_features` with a progress bar (RDKit's 2-D descriptors take ~5-10 ms a
    molecule: minutes for a large CSV); None for no features."""
    if not kind:
        return molecule_features(smiles, kind)
    from tqdm.auto import tqdm

    parts, step = [], 500
    with tqdm(total=len(smiles), desc=f"{kind} features", unit="mol", disable=not progress) as bar:
        for start in range(0, len(smiles), step):
            parts.append(molecule_features(smiles[start : start + step], kind))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else molecule_features([], kind)


@dataclass
class FeatureScaler:
    """Raw molecule features (n, F) -> float32 in [0, 1]: each column through its empirical CDF on the
    training rows (sklearn's QuantileTransformer; chemprop's rdkit_2d_normalized uses CDFs too, fitted on
    ChEMBL), so heavy-tailed descriptors (Ipc ~ 1e30) neither dominate nor overflow; a value missing for a
    molecule becomes 0.5 (the training median). Columns without a training value are dropped (`keep`)."""

    keep: np.ndarray  # (F,) bool: the raw columns the transform reads
    quantiles: np.ndarray  # (n_quantiles, kept columns): QuantileTransformer.quantiles_
    references: np.ndarray  # (n_quantiles,): QuantileTransformer.references_

    @classmethod
    def fit(cls, features: np.ndarray, train: np.ndarray) -> FeatureScaler:
        from sklearn.preprocessing import QuantileTransformer

        keep = ~np.isnan(features[train]).all(axis=0)
        # random_state: above 10,000 training rows sklearn subsamples them, and a fit must be repeatable.
        q = QuantileTransformer(
            n_quantiles=max(2, min(1000, len(train))), output_distribution="uniform", random_state=0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant columns: all 0 after the transform, as they should be
            q.fit(features[train][:, keep])
        return cls(keep, q.quantiles_, q.references_)

    def transform(self, features: np.ndarray) -> np.ndarray:
        from sklearn.preprocessing import QuantileTransformer

        # The fitted transformer rebuilt from its arrays: a saved predictor holds no pickle.
        q = QuantileTransformer(n_quantiles=len(self.references), output_distribution="uniform")
        q.quantiles_, q.references_ = self.quantiles, self.references
        q.n_quantiles_, q.n_features_in_ = len(self.references), int(self.keep.sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = q.transform(features[:, self.keep])
        return np.nan_to_num(out, nan=0.5).astype(np.float32)

    def save(self, path) -> None:
        from safetensors.numpy import save_file

        arrays = {"keep": self.keep.astype(np.uint8), "quantiles": self.quantiles,
                  "references": self.references}  # fmt: skip
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))

    @classmethod
    def load(cls, path) -> FeatureScaler:
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
        return cls(arrays["keep"].astype(bool), arrays["quantiles"], arrays["references"])
