"""`acml finetune` end to end on CSVs written here: classification and regression, multi-task with missing
labels, invalid SMILES rows reported, the baseline in the same run, metrics and report in a real MLflow
store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration


def _molecules(n: int) -> list[str]:
    from rdkit import Chem, RDConfig

    out = []
    for line in (Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi").read_text().splitlines():
        mol = Chem.MolFromSmiles(line.split()[0])
        if mol is not None and 5 <= mol.GetNumHeavyAtoms() <= 30 and "." not in line.split()[0]:
            out.append(Chem.MolToSmiles(mol))
        if len(out) == n:
            return out
    raise AssertionError("not enough molecules")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    import torch

    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model

    torch.manual_seed(0)
    model = ACMLModel({"schema": "hu", "num_layers": 2, "emb_dim": 16, "proj_dim": 16}, {"morgan": 32})
    return str(save_model(model, tmp_path_factory.mktemp("model") / "model"))


def _write_csv(path: Path, task: str) -> Path:
    from rdkit import Chem
    from rdkit.Chem import Crippen, rdMolDescriptors

    smiles = _molecules(60)
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    if task == "regression":
        a = [Crippen.MolLogP(m) for m in mols]
        b = [rdMolDescriptors.CalcTPSA(m) / 20 for m in mols]
    else:
        a = [float(rdMolDescriptors.CalcNumAromaticRings(m) > 0) for m in mols]
        b = [float(Crippen.MolLogP(m) > 2) for m in mols]
    frame = pd.DataFrame({"mol": smiles, "a": a, "b": b, "note": "x"})
    frame.loc[::5, "b"] = np.nan  # 12 missing labels in task b
    frame.loc[len(frame)] = {"mol": "C1CC(", "a": 1.0, "b": 0.0, "note": "broken"}
    frame.loc[len(frame)] = {"mol": "not_a_smiles", "a": 0.0, "b": 1.0, "note": "broken"}
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("task", "split"), [("regression", "scaffold"), ("classification", "random")])
def test_finetune_csv_end_to_end(task, split, tmp_path, tiny_model, mlflow_store, capsys, monkeypatch):
    import mlflow

    from acml_dist.config import load_config
    from acml_dist.evaluate import finetune

    csv = _write_csv(tmp_path / f"{task}.csv", task)
    cfg = load_config(
        "finetune",
        [
            f"data.path={csv}",
            "data.smiles_column=mol",
            "data.targets=[a,b]",
            f"data.task={task}",
            f"data.split={split}",
            f"model={tiny_model}",
            f"output={tmp_path / 'out'}",
            f"runs_root={tmp_path / 'runs'}",
            "eval.seeds=[0,1]",
            "eval.finetune_epochs=2",
            "eval.batch_size=16",
            f"name=ft-{task}",
            # the classification run's head also reads RDKit descriptors (eval.mol_features); the regression
            # run registers its predictors in MLflow
            *(["eval.mol_features=rdkit2d"] if task == "classification" else ["register=ft-regression"]),
        ],
    )
    metrics = finetune(cfg)

    assert metrics["rows"] == 62 and metrics["invalid_rows"] == 2 and metrics["valid_rows"] == 60
    assert metrics["missing_labels"] == 12
    main = "rmse" if task == "regression" else "roc_auc"
    for method in ("acml_finetune", "scratch_finetune", "acml_linear", "random_linear"):
        assert np.isfinite(metrics[f"{method}_{main}_mean"]), method
        assert metrics[f"{method}_{main}_std"] >= 0
    out = tmp_path / "out"
    invalid = pd.read_csv(out / "invalid_rows.csv")
    assert invalid["input"].tolist() == ["C1CC(", "not_a_smiles"] and invalid["row"].tolist() == [60, 61]
    text = (out / "report.md").read_text()
    assert "GIN from scratch (baseline)" in text and "not_a_smiles" in text
    # The recipe is stated; the baseline runs at the published width 300 with the OGB schema (the default),
    # the tiny Hu-schema encoder at its own width 16.
    assert (
        "AdamW" in text
        and "best validation epoch's moving average of the weights" in text
        and "Split: " in text
    )
    assert "| GIN from scratch (baseline), OGB schema | 300 |" in text
    assert "| ACML GIN, fine-tuned | 16 |" in text
    if task == "regression":  # the floor: the train-mean predictor's test scores
        assert "train-mean predictor (floor)" in text and metrics["train_mean_rmse_mean"] > 0
    printed = capsys.readouterr().out
    assert f"acml finetune {task}" in printed and "GIN from scratch (baseline)" in printed
    assert (out / "figures" / f"finetune_{task}.png").exists()
    assert json.loads((out / "metrics.json").read_text())["invalid_rows"] == 2
    # each seed's test molecules: their input row, their labels as in the file, both fine-tuned predictions
    predictions = pd.read_csv(out / "predictions.csv")
    source = pd.read_csv(csv)
    assert sorted(predictions["seed"].unique()) == [0, 1] and not set(predictions["row"]) & {60, 61}
    per_seed = predictions.groupby("seed").size()  # the test part: ~10% of the 60 valid molecules
    assert per_seed.nunique() == 1 and 3 <= per_seed.iloc[0] <= 12
    for target in ("a", "b"):
        expected = source.loc[predictions["row"], target].to_numpy()
        assert np.allclose(predictions[f"label_{target}"], expected, equal_nan=True)
        for method in ("acml_finetune", "scratch_finetune"):
            assert np.isfinite(predictions[f"pred_{method}_{target}"]).all()

    from acml_dist.evaluate import predict_job

    # 62 rows in chunks of 25: the invalid rows 60-61 fall in a chunk of their own with 10 valid ones
    monkeypatch.setattr(predict_job, "PREDICT_CHUNK", 25)
    _check_predictors(out, csv, predictions)  # classification: a head that reads RDKit descriptors too

    runs = mlflow.search_runs(experiment_names=["acml"], output_format="list")
    assert len(runs) == 1
    logged = runs[0].data.metrics
    assert logged["invalid_rows"] == 2 and f"scratch_finetune_{main}_mean" in logged
    features = "rdkit2d" if task == "classification" else "none"
    assert runs[0].data.params["mol_features"] == features
    assert ("rdkit2d descriptors" in text) == (task == "classification")
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "out")}
    assert {"out/report.md", "out/predictions.csv", "out/figures"} <= artifacts
    assert "out/fits" not in artifacts  # the resume cache stays on disk
    assert "out/predictors" in artifacts
    # the predictors as another machine gets them: from the run in MLflow
    from omegaconf import OmegaConf

    from acml_dist.evaluate.predict_job import predict_file

    uri = f"runs:/{runs[0].info.run_id}/out/predictors"
    job = {"predictor": uri, "input": str(csv), "output": str(tmp_path / "from_mlflow.csv"),
           "smiles_column": "mol"}  # fmt: skip
    assert predict_file(OmegaConf.create(job))["predictors"] == 2
    from_mlflow = pd.read_csv(tmp_path / "from_mlflow.csv")
    ensemble = pd.read_parquet(out / "both.parquet")
    assert np.allclose(from_mlflow["pred_a"], ensemble["pred_a"], equal_nan=True)
    if task == "regression":  # registered: a pyfunc any MLflow user loads, and acml predict reads
        assert "registered: models:/ft-regression/1" in printed
        version = mlflow.MlflowClient().get_model_version("ft-regression", "1")
        assert version.tags["task"] == "regression" and float(version.tags["acml_finetune_rmse_mean"]) > 0
        pyfunc = mlflow.pyfunc.load_model("models:/ft-regression/1")
        served = pyfunc.predict(pd.DataFrame({"smiles": pd.read_csv(csv)["mol"]}))
        assert np.allclose(served["pred_a"].astype(float), ensemble["pred_a"], equal_nan=True)
        assert served["pred_a"].iloc[-1] is None  # null, not NaN, in a served JSON answer
        assert served["error"].notna().tolist() == ensemble["error"].notna().tolist()
        job["predictor"] = "models:/ft-regression/1"
        assert predict_file(OmegaConf.create(job))["predictors"] == 2
        again = pd.read_csv(tmp_path / "from_mlflow.csv")
        assert np.allclose(again["pred_a"], ensemble["pred_a"], equal_nan=True)


def _check_predictors(out: Path, csv: Path, predictions: pd.DataFrame) -> None:
    """`acml predict` with the kept predictors gives each seed's test predictions back from the saved
    weights (and descriptor normaliser), on every row of the file (the invalid ones with a reason and no
    prediction)."""
    from omegaconf import OmegaConf

    from acml_dist.evaluate.predict_job import predict_file

    for seed in (0, 1):
        target = out / f"predicted_{seed}.csv"
        cfg = {"predictor": str(out / "predictors" / f"seed{seed}"), "input": str(csv), "output": str(target),
               "smiles_column": "mol"}  # fmt: skip
        assert predict_file(OmegaConf.create(cfg)) == {"rows": 62, "predicted": 60, "predictors": 1}
        predicted = pd.read_csv(target)
        fitted = predictions[predictions["seed"] == seed]
        for name in ("a", "b"):
            again = predicted.loc[fitted["row"], f"pred_{name}"].to_numpy()
            assert np.allclose(again, fitted[f"pred_acml_finetune_{name}"], atol=1e-5)
        assert predicted["error"].notna().tolist() == [False] * 60 + [True, True]
        assert predicted["pred_a"].isna().tolist() == [False] * 60 + [True, True]
    ensemble = {"predictor": str(out / "predictors"), "input": str(csv), "output": str(out / "both.parquet"),
                "smiles_column": "mol"}  # fmt: skip
    assert predict_file(OmegaConf.create(ensemble))["predictors"] == 2
    both = pd.read_parquet(out / "both.parquet")
    single = [pd.read_csv(out / f"predicted_{seed}.csv")["pred_a"] for seed in (0, 1)]
    assert np.allclose(both["pred_a"], (single[0] + single[1]) / 2, equal_nan=True)
    assert (both["pred_a_std"].dropna() > 0).all() and list(both.columns[:4]) == ["mol", "a", "b", "note"]


def test_finetune_on_the_files_own_split(tmp_path, tiny_model, mlflow_store):
    """`data.split=column`: each row in the part its split column names (any case of the words, the column
    matched in any case); every seed tests on exactly the file's test rows, and the report says so."""
    from acml_dist.config import load_config
    from acml_dist.evaluate import finetune

    csv = _write_csv(tmp_path / "own.csv", "regression")
    frame = pd.read_csv(csv)
    frame["Split"] = (["train"] * 4 + ["Valid", "TEST"]) * 10 + ["test", "train"]  # rows 60-61: invalid
    frame.to_csv(csv, index=False)
    overrides = [f"data.path={csv}", "data.smiles_column=mol", "data.targets=[a]", "data.split=column",
                 f"model={tiny_model}", f"output={tmp_path / 'out'}", f"runs_root={tmp_path / 'runs'}",
                 "eval.seeds=[0,1]", "eval.finetune_epochs=1", "eval.linear_probe=false",
                 "eval.workers=1"]  # fmt: skip
    finetune(load_config("finetune", overrides))
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    for seed in (0, 1):
        assert predictions.loc[predictions["seed"] == seed, "row"].tolist() == list(range(5, 60, 6))
    assert "the file's own split" in (tmp_path / "out" / "report.md").read_text()
