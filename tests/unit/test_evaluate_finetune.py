"""Splits, masked metrics, the fine-tuning loop and the figures, on small data made here."""

from __future__ import annotations

import numpy as np
import pytest

from acml_dist.evaluate.finetuning import LabelledSet, fit_predictor, linear_probe_task, task_metrics
from acml_dist.evaluate.splits import murcko_scaffold, random_split, scaffold_split

pytestmark = pytest.mark.unit

SMILES = (
    ["c1ccccc1" + "C" * i for i in range(8)]
    + ["C1CCNCC1" + "O" * (i % 2) + "C" * i for i in range(6)]
    + ["c1ccncc1C" + "N" * (i % 2) for i in range(4)]
    + ["CCO", "CCCO", "CC(=O)O", "CCN"]
)


def test_scaffold_split_is_deterministic_and_keeps_scaffolds_apart():
    train, val, test = scaffold_split(SMILES, (0.8, 0.1, 0.1), seed=0)
    again = scaffold_split(SMILES, (0.8, 0.1, 0.1), seed=5)
    assert all((a == b).all() for a, b in zip((train, val, test), again))
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(SMILES)))
    scaffolds = [{murcko_scaffold(SMILES[i]) for i in part} for part in (train, val, test)]
    assert not scaffolds[0] & scaffolds[2] and not scaffolds[0] & scaffolds[1]
    assert len(train) >= len(test)


def test_a_split_nothing_can_be_learnt_on_is_refused_with_its_cause(caplog):
    from acml_dist.errors import DataError
    from acml_dist.evaluate.splits import check_split, make_split

    acyclic = ["C" * i + "O" for i in range(1, 10)]  # one scaffold set ("") of 9 of 10 molecules
    with pytest.raises(DataError, match=r"1 / 9 / 0, nothing to learn.*set \(9 molecules, scaffold none"):
        make_split(acyclic + ["c1ccccc1"], "scaffold", (0.8, 0.1, 0.1), 0)
    assert [len(p) for p in make_split(acyclic + ["c1ccccc1"], "random", (0.8, 0.1, 0.1), 0)] == [8, 1, 1]
    with caplog.at_level("WARNING"):  # a usable split, but training on 3 of an intended 8
        parts = (np.arange(3), np.array([3]), np.arange(4, 10))
        check_split(acyclic + ["c1ccccc1"], "scaffold", (0.8, 0.1, 0.1), parts)
    assert "3 / 1 / 6, training on under half the intended share" in caplog.text
    assert all(len(p) for p in make_split(SMILES, "scaffold", (0.8, 0.1, 0.1), 0))


def test_a_split_part_with_one_class_is_refused_or_named(caplog):
    from acml_dist.errors import DataError
    from acml_dist.evaluate.splits import check_split_classes

    parts = (np.arange(4), np.array([4, 5]), np.array([6, 7]))
    y = np.array([[0, 1], [1, 0], [0, 1], [1, 0], [1, 0], [1, 1], [0, np.nan], [1, 1]], dtype=float)
    with caplog.at_level("WARNING"):
        check_split_classes(y, ["a", "b"], "scaffold", parts)  # a: one class in validation, b: in test
    assert "validation part of the scaffold split: fewer than two classes for ['a']" in caplog.text
    assert "test part of the scaffold split: fewer than two classes for ['b']" in caplog.text
    with pytest.raises(DataError, match=r"test part of the random split \(2 molecules\) holds fewer than"):
        check_split_classes(y[:, 1:], ["b"], "random", (parts[0], np.array([0, 1]), parts[2]))


def test_random_split_depends_on_seed_and_partitions():
    a = random_split(50, (0.8, 0.1, 0.1), seed=0)
    b = random_split(50, (0.8, 0.1, 0.1), seed=1)
    assert [len(p) for p in a] == [40, 5, 5]
    assert sorted(np.concatenate(a).tolist()) == list(range(50))
    assert not (a[0] == b[0]).all()


def test_task_metrics_mask_missing_labels_and_match_sklearn():
    from sklearn.metrics import mean_squared_error, roc_auc_score

    y = np.array([[1.0, 0.0], [2.0, np.nan], [np.nan, 1.0], [4.0, 1.0], [5.0, 0.0]])
    p = np.array([[1.5, 0.2], [2.0, 0.9], [9.0, 0.8], [3.0, 0.6], [5.0, 0.1]])
    reg = task_metrics(y[:, :1], p[:, :1], "regression")
    assert reg["rmse"] == pytest.approx(np.sqrt(mean_squared_error([1, 2, 4, 5], [1.5, 2, 3, 5])))
    cls = task_metrics(y[:, 1:], p[:, 1:], "classification")
    assert cls["roc_auc"] == pytest.approx(roc_auc_score([0, 1, 1, 0], [0.2, 0.8, 0.6, 0.1]))
    # A task with one class in this split cannot be scored: it is left out, not scored as 0 or 1.
    assert task_metrics(np.array([[1.0], [1.0]]), np.array([[0.3], [0.9]]), "classification") == {}


def _toy_graphs(n: int, seed: int = 0):
    import torch
    from torch_geometric.data import Data

    rng = np.random.default_rng(seed)
    graphs, oxygens = [], []
    for _ in range(n):
        atoms = int(rng.integers(3, 10))
        z = rng.choice([6, 7, 8], size=atoms)  # atomic numbers -> Hu schema index = Z
        x = torch.tensor(np.stack([z, np.zeros(atoms, dtype=int)], 1), dtype=torch.long)
        src = torch.arange(atoms - 1)
        edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        graphs.append(
            Data(x=x, edge_index=edge_index, edge_attr=torch.zeros(edge_index.size(1), 2, dtype=torch.long))
        )
        oxygens.append(float((z == 8).sum()))
    return graphs, np.array(oxygens)


def test_fit_predictor_early_stops_and_restores_the_best_epoch():
    import torch

    from acml_dist.models.gin import GIN

    graphs, oxygens = _toy_graphs(80)
    y = np.stack([oxygens, np.where(np.arange(80) % 4 == 0, np.nan, oxygens * 0.5)], 1)  # missing labels
    data = LabelledSet("toy", "regression", ["o", "half_o"], [""] * 80, graphs, y, rows=80)
    split = (np.arange(60), np.arange(60, 70), np.arange(70, 80))
    torch.manual_seed(0)
    fit = fit_predictor(
        GIN(emb_dim=16, num_layers=2), 16, data, split, seed=0, epochs=12, patience=2, batch_size=16, lr=5e-3
    )
    vals = [c["val_rmse"] for c in fit.curve]
    assert len(vals) <= 12 and len(vals) - fit.best_epoch <= 2
    assert fit.val["rmse"] == pytest.approx(min(vals), rel=1e-5)
    assert set(fit.test) == {"rmse", "mae"}


def test_linear_probe_task_learns_from_informative_embeddings():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 6))
    y = np.stack([x[:, 0] * 2 + 0.05 * rng.normal(size=120), (x[:, 1] > 0).astype(float)], 1)
    y[::7, 1] = np.nan
    split = (np.arange(90), np.arange(90, 100), np.arange(100, 120))
    reg = LabelledSet("r", "regression", ["a"], [""] * 120, [], y[:, :1], rows=120)
    cls = LabelledSet("c", "classification", ["b"], [""] * 120, [], y[:, 1:], rows=120)
    assert linear_probe_task(x, reg, split, 0)["rmse"] < 0.2
    assert linear_probe_task(x, cls, split, 0)["roc_auc"] > 0.9


def test_figures_are_written(tmp_path):
    from acml_dist.evaluate import plots
    from acml_dist.evaluate.isomers import isomer_table
    from acml_dist.evaluate.probes import probe_table

    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 5))
    written = [
        plots.recall_curves({"a": np.linspace(0.1, 1, 10)}, tmp_path / "r.png"),
        plots.isomer_bars(isomer_table(x, x, ["A", "A", "B", "B", "B"] * 8), tmp_path / "i.png"),
        plots.embedding_map(x, x[:, 0], "p", tmp_path / "m.png", method="tsne")[0],
        plots.probe_bars(probe_table({"e": x[: len(SMILES)]}, SMILES)[:4], ["e"], tmp_path / "p.png"),
        plots.finetune_curves(
            {"m": [{"epoch": 1, "train_loss": 1.0, "val_rmse": 2.0}]}, "rmse", tmp_path / "f.png", "t"
        ),
    ]
    for path in written:
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_label_matrix_reads_word_labels_and_refuses_unusable_targets():
    import pandas as pd

    from acml_dist.errors import DataError
    from acml_dist.evaluate.labelled import label_matrix

    frame = pd.DataFrame(
        {
            "active": ["Yes", "no", None, " YES ", "no"],
            "flag": [True, False, True, False, True],
            "y01": [1, 0, None, 1, 0],
            "logp": [1.5, "n/a", 2.0, None, -0.5],
            "kind": ["cat", "dog", "cat", "dog", "cat"],
            "empty": [None] * 5,
        }
    )
    y = label_matrix(frame, ["active", "flag", "y01"], "classification", "t")
    np.testing.assert_array_equal(y, [[1, 1, 1], [0, 0, 0], [np.nan, 1, np.nan], [1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(
        label_matrix(frame, ["logp"], "regression", "t")[:, 0], [1.5, np.nan, 2.0, np.nan, -0.5]
    )
    with pytest.raises(DataError, match="'kind' has labels \\['cat', 'dog'\\].*data.positive_label"):
        label_matrix(frame, ["kind"], "classification", "t")
    np.testing.assert_array_equal(
        label_matrix(frame, ["kind"], "classification", "t", "DOG")[:, 0], [0, 1, 0, 1, 0]
    )
    with pytest.raises(DataError, match="positive_label='bird' needs a pair"):
        label_matrix(frame, ["kind"], "classification", "t", "bird")
    signs = pd.DataFrame({"bbb": ["BBB+", "bbb-", None, "BBB-"], "sign": ["-", "+", "+", None]})
    np.testing.assert_array_equal(
        label_matrix(signs, ["bbb", "sign"], "classification", "t"),
        [[1, 0], [0, 1], [np.nan, 1], [0, np.nan]],
    )
    with pytest.raises(DataError, match="has labels"):  # two stems: not one sign pair
        label_matrix(pd.DataFrame({"m": ["a+", "b-"]}), ["m"], "classification", "t")
    np.testing.assert_array_equal(  # inf and numbers past float64 are missing labels, not a crash later
        label_matrix(pd.DataFrame({"y": ["inf", "1e400", "-inf", "2.5"]}), ["y"], "regression", "t")[:, 0],
        [np.nan, np.nan, np.nan, 2.5],
    )
    with pytest.raises(DataError, match="'empty' has no usable regression labels"):
        label_matrix(frame, ["empty"], "regression", "t")
    with pytest.raises(DataError, match="'all_yes' has one class only \\(1 in all 3 labelled rows\\)"):
        one_class = pd.DataFrame({"all_yes": ["yes", "YES", None, "yes"]})
        label_matrix(one_class, ["all_yes"], "classification", "t")


def test_finetune_keeps_one_heavy_atom_molecules_as_evaluate_does(tmp_path):
    """Methane and water are labelled rows like any other (ESOL has methane): no pretraining-corpus floor."""
    import pandas as pd

    from acml_dist.config import load_config
    from acml_dist.evaluate.labelled import load_labelled_set
    from acml_dist.evaluate.run import _data_config

    csv = tmp_path / "small.csv"
    pd.DataFrame({"smiles": ["C", "O", "CCO", "C1CC("], "y": [1.0, 2.0, 3.0, 4.0]}).to_csv(csv, index=False)
    cfg = load_config("finetune", [f"data.path={csv}", "data.targets=[y]", "data.task=regression"])
    data = load_labelled_set(cfg.data, None, "ogb")
    assert data.smiles == ["C", "O", "CCO"] and [r["input"] for r in data.invalid] == ["C1CC("]
    evaluate_floor = _data_config("esol", "scaffold").standardize.min_heavy_atoms
    assert cfg.data.standardize.min_heavy_atoms == evaluate_floor


def test_task_is_inferred_from_the_labels_and_smiles_column_matched_in_any_case(tmp_path):
    import pandas as pd

    from acml_dist.config import load_config
    from acml_dist.evaluate.labelled import read_labelled_frame

    frame = pd.DataFrame(
        {
            "SMILES": ["CCO", "CCC", "CCN", "CCCl"],  # read as data.smiles_column=smiles
            "bbb": ["BBB+", "bbb-", None, "BBB+"],
            "flag": [True, False, True, False],
            "logp": [1.5, 0.5, 2.0, 1.0],
            "halves": [0.5, 1.5, 0.5, 1.5],  # two values, but not 0/1: a regression target
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    tasks = {}
    cases = (("[bbb,flag]", None), ("[bbb,logp]", None), ("[halves]", None), ("[flag]", "regression"))
    for targets, given in cases:
        overrides = [f"data.path={tmp_path / 't.csv'}", f"data.targets={targets}"]
        cfg = load_config("finetune", overrides + ([f"data.task={given}"] if given else []))
        _, smiles_column, _, tasks[targets] = read_labelled_frame(cfg.data)
        assert smiles_column == "SMILES"
    assert tasks == {
        "[bbb,flag]": "classification",
        "[bbb,logp]": "regression",
        "[halves]": "regression",
        "[flag]": "regression",
    }


def test_without_data_targets_every_numeric_column_but_a_row_number_is_a_target(tmp_path):
    """A CSV written by pandas with its index (`Unnamed: 0`) or with a running id: those columns number the
    rows and are not labels; an integer label that does not count the rows stays a target."""
    import pandas as pd

    from acml_dist.config import load_config
    from acml_dist.evaluate.labelled import read_labelled_frame

    columns = {"smiles": ["CCO", "CCC", "CCN", "CCCl"], "id": [1, 2, 3, 4], "y": [0.5, 1.5, 2.5, 0.1],
               "count": [3, 1, 2, 5], "name": ["a", "b", "c", "d"]}  # fmt: skip
    frame = pd.DataFrame(columns)
    frame.to_csv(tmp_path / "t.csv")  # with the index: a first column named "Unnamed: 0" when read back
    cfg = load_config("finetune", [f"data.path={tmp_path / 't.csv'}"])
    _, _, targets, task = read_labelled_frame(cfg.data)
    assert targets == ["y", "count"] and task == "regression"
