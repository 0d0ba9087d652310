"""Molecule-level features for the property head (`eval.mol_features`): RDKit's 2-D descriptors, their
normalisation on the training split, and a head that reads them beside the embedding."""

from __future__ import annotations

import numpy as np
import pytest

from acml_dist.chem.descriptors import descriptor_names, molecule_features, rdkit_2d
from acml_dist.evaluate.finetuning import LabelledSet, fit_predictor
from acml_dist.evaluate.mol_features import FeatureScaler

pytestmark = pytest.mark.unit


def test_rdkit_2d_gives_one_row_per_smiles_and_nan_for_what_does_not_parse() -> None:
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    x = rdkit_2d(["CCO", "not a molecule", "Oc1ccccc1"])
    names = descriptor_names()
    assert x.shape == (3, len(names)) and len(names) > 200
    assert np.isnan(x[1]).all() and np.isfinite(x[[0, 2]]).mean() > 0.95
    assert x[2, names.index("MolWt")] == pytest.approx(Descriptors.MolWt(Chem.MolFromSmiles("Oc1ccccc1")))
    assert molecule_features(["CCO"], "") is None
    with pytest.raises(ValueError, match="rdkit2d"):
        molecule_features(["CCO"], "mordred")


def test_features_are_normalised_on_the_training_rows_only(tmp_path) -> None:
    rng = np.random.default_rng(0)
    raw = np.stack([rng.lognormal(0, 5, 40), rng.normal(size=40), np.full(40, np.nan)], axis=1)
    raw[3, 0] = 1e30  # heavy-tailed, as RDKit's Ipc
    raw[35, 1] = np.nan  # a descriptor RDKit could not compute for one molecule
    train, test = np.arange(30), np.arange(30, 40)
    scaler = FeatureScaler.fit(raw, train)
    out = scaler.transform(raw)
    assert out.shape == (40, 2) and out.dtype == np.float32  # the column without a training value dropped
    assert out.min() >= 0.0 and out.max() <= 1.0 and out[35, 1] == 0.5
    moved = raw.copy()
    moved[test, 0] = 1e6 * np.abs(moved[test, 0]) + 1e35  # test rows outside the training range
    again = FeatureScaler.fit(moved, train).transform(moved)
    np.testing.assert_array_equal(again[train], out[train])  # test rows do not shape the transform
    assert (again[test, 0] == 1.0).all()
    scaler.save(tmp_path / "scaler.safetensors")  # as a kept predictor holds it: plain arrays, same transform
    np.testing.assert_array_equal(FeatureScaler.load(tmp_path / "scaler.safetensors").transform(raw), out)


def test_the_head_reads_the_features_beside_the_embedding() -> None:
    """Identical graphs, labels only the features carry: with them the fit predicts the test labels;
    without them it cannot beat the training mean."""
    import torch
    from torch_geometric.data import Data

    from acml_dist.models.gin import GIN

    n = 120
    rng = np.random.default_rng(1)
    y = rng.normal(size=n)
    x = torch.tensor([[6, 0], [8, 0]])
    edge_index = torch.tensor([[0, 1], [1, 0]])
    graph = Data(x=x, edge_index=edge_index, edge_attr=torch.zeros(2, 2, dtype=torch.long))
    data = LabelledSet("toy", "regression", ["y"], [""] * n, [graph] * n, y[:, None], rows=n)
    split = (np.arange(90), np.arange(90, 105), np.arange(105, n))
    features = np.stack([y, rng.normal(size=n)], axis=1)
    rmse = {}
    for name, feats in (("with", features), ("without", None)):
        torch.manual_seed(0)
        fit = fit_predictor(GIN(emb_dim=8, num_layers=1), 8, data, split, seed=0, epochs=60, patience=60,
                            batch_size=16, lr=1e-2, warmup=0.05, schedule="cosine", final_lr=0.01,
                            features=feats)  # fmt: skip
        rmse[name] = fit.test["rmse"]
    floor = float(np.sqrt(np.mean((y[split[2]] - y[split[0]].mean()) ** 2)))
    assert rmse["with"] < 0.5 * floor and rmse["without"] > 0.8 * floor, (rmse, floor)
