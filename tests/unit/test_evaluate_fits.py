"""Fine-tuning fits side by side (`eval.workers`): how many processes, and that a fit scores the same in a
spawned worker as in this process."""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from acml_dist.evaluate.fits import FitJob, fit_workers, run_fits

pytestmark = pytest.mark.unit

SMILES = (
    "CCO CCCO CCCCO CC(C)O c1ccccc1 c1ccccc1O c1ccccc1N c1ccccc1C CC(=O)O CCC(=O)O CCN CCCN c1ccncc1 c1ccoc1 "
    "C1CCCCC1 C1CCCCC1O CC(=O)N COC CCOC CCCl ClCCl c1ccc2ccccc2c1 O=C1CCCCC1 CC#N C=CC=C CSC CCS OCCO NCCN"
).split()


def test_workers_follow_the_request_the_cores_and_the_fits(monkeypatch):
    assert fit_workers(3, fits=6, threads=1) == 3
    assert fit_workers(8, fits=6, threads=1) == 6  # never more processes than fits
    assert fit_workers(1, fits=6, threads=4) == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    assert fit_workers(0, fits=6, threads=1) == 6
    assert fit_workers(0, fits=6, threads=2) == 4  # 8 cores at 2 threads each
    assert fit_workers(0, fits=6, threads=16) == 1
    with pytest.raises(ValueError, match="eval.workers"):
        fit_workers(-1, fits=6, threads=1)


def test_fits_in_worker_processes_score_as_in_this_process():
    import pandas as pd
    from omegaconf import OmegaConf

    from acml_dist.config.data import DataConfig
    from acml_dist.config.eval import EvalConfig
    from acml_dist.evaluate.labelled import featurize_labelled
    from acml_dist.evaluate.properties import EncoderView, fresh_like
    from acml_dist.evaluate.run import cpu_threads
    from acml_dist.evaluate.splits import make_split
    from acml_dist.models import ACMLModel

    y = np.random.default_rng(0).normal(size=len(SMILES))
    frame = pd.DataFrame({"smiles": SMILES, "y": y})
    std = OmegaConf.structured(DataConfig).standardize
    data = featurize_labelled(frame, "smiles", ["y"], "regression", "t", "hu", std)
    # ~2,000 molecules, ~8,000 tensors: past the open-file limit below if each went to a worker as an fd
    copies = 70
    graphs = [g.clone() for _ in range(copies) for g in data.graphs]  # distinct tensors: pickle memoises
    data = dataclasses.replace(
        data, smiles=data.smiles * copies, graphs=graphs, y=np.tile(data.y, (copies, 1))
    )
    model = ACMLModel({"schema": "hu", "emb_dim": 16, "num_layers": 2}, {"t": 8})
    split = make_split(data.smiles, "random", [0.6, 0.2, 0.2], 0)

    def jobs() -> list[FitJob]:  # fresh encoders: a fit trains its encoder in place
        return [
            FitJob(f"seed {s}", EncoderView(fresh_like(model, s)), data, split, s, s == 1) for s in (0, 1)
        ]

    ecfg = OmegaConf.merge(
        OmegaConf.structured(EvalConfig),
        {"finetune_epochs": 3, "batch_size": 256, "progress": False, "num_threads": 1, "ema": 0.5},
    )
    with cpu_threads(1):
        here = run_fits(jobs(), OmegaConf.merge(ecfg, {"workers": 1}))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))  # far below the graphs' tensors
    try:
        spawned = run_fits(jobs(), OmegaConf.merge(ecfg, {"workers": 2}))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [f.model is not None for f in here] == [True, True]
    assert [f.model for f in spawned] == [None, None]  # the weights stay in the workers
    for a, b in zip(here, spawned):
        assert a.best_epoch == b.best_epoch and len(a.curve) == len(b.curve) == 3
        np.testing.assert_allclose(
            [r["val_rmse"] for r in a.curve], [r["val_rmse"] for r in b.curve], rtol=1e-5
        )
        np.testing.assert_allclose(a.test["rmse"], b.test["rmse"], rtol=1e-5)
    assert here[0].test["rmse"] != pytest.approx(here[1].test["rmse"])  # the two jobs differ


def test_finished_fits_are_kept_and_read_back_not_rerun(tmp_path, monkeypatch):
    """An evaluation run again after a crash reads the fits that had finished; a changed recipe, weights or
    label refits; an unreadable stored fit refits."""
    import pandas as pd
    from omegaconf import OmegaConf

    from acml_dist.config.data import DataConfig
    from acml_dist.config.eval import EvalConfig
    from acml_dist.evaluate import fits
    from acml_dist.evaluate.labelled import featurize_labelled
    from acml_dist.evaluate.properties import EncoderView, fresh_like
    from acml_dist.evaluate.splits import make_split
    from acml_dist.models import ACMLModel

    frame = pd.DataFrame({"smiles": SMILES, "y": np.random.default_rng(1).normal(size=len(SMILES))})
    std = OmegaConf.structured(DataConfig).standardize
    data = featurize_labelled(frame, "smiles", ["y"], "regression", "t", "hu", std)
    model = ACMLModel({"schema": "hu", "emb_dim": 8, "num_layers": 2}, {"t": 4})
    split = make_split(data.smiles, "random", [0.6, 0.2, 0.2], 0)
    ecfg = OmegaConf.merge(
        OmegaConf.structured(EvalConfig), {"finetune_epochs": 2, "progress": False, "workers": 1}
    )

    def jobs(seeds=(0, 1), data=data) -> list[FitJob]:
        return [FitJob(f"seed {s}", EncoderView(fresh_like(model, s)), data, split, s, False) for s in seeds]

    first = run_fits(jobs(), ecfg, store=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2
    ran: list[str] = []
    real_fit_one = fits.fit_one

    def counting_fit_one(job, *args, **kwargs):
        ran.append(job.label)
        return real_fit_one(job, *args, **kwargs)

    monkeypatch.setattr(fits, "fit_one", counting_fit_one)
    again = run_fits(jobs(), ecfg, store=tmp_path)
    assert ran == []  # both read back
    for a, b in zip(first, again):
        assert a.test == b.test and a.best_epoch == b.best_epoch and a.curve == b.curve
        np.testing.assert_allclose(a.test_pred, b.test_pred)
    run_fits(jobs(), OmegaConf.merge(ecfg, {"lr": 0.01}), store=tmp_path)
    assert ran == ["seed 0", "seed 1"]  # another recipe: refitted
    relabelled = dataclasses.replace(data, y=data.y + 1.0)
    run_fits(jobs((0,), relabelled), ecfg, store=tmp_path)
    assert ran[2:] == ["seed 0"]  # other labels: refitted
    stored = fits.fit_key(jobs((1,))[0], ecfg, None)
    (tmp_path / f"{stored}.json").write_text('{"test": ')  # cut off
    run_fits(jobs(), ecfg, store=tmp_path)
    assert ran[3:] == ["seed 1"]  # the unreadable one refitted, seed 0 read back
    other_weights = fresh_like(model, 7)
    assert fits.fit_key(jobs((1,))[0], ecfg, None) != fits.fit_key(
        FitJob("seed 1", EncoderView(other_weights), data, split, 1, False), ecfg, None
    )


@pytest.mark.parametrize(("task", "mol_features"), [("classification", ""), ("regression", "rdkit2d")])
def test_a_kept_predictor_predicts_as_its_fit(tmp_path, task, mol_features):
    """A `keep` job saves its predictor in the store; loaded back it gives the fit's test predictions (with
    `eval.mol_features`, its head's descriptors normalised as in the fit), and a fit read back from the
    store keeps pointing at it."""
    import json

    import pandas as pd
    from omegaconf import OmegaConf

    from acml_dist.config.data import DataConfig
    from acml_dist.config.eval import EvalConfig
    from acml_dist.errors import DataError
    from acml_dist.evaluate.labelled import featurize_labelled
    from acml_dist.evaluate.mol_features import features_with_progress
    from acml_dist.evaluate.predictors import META, load_predictor, predict_graphs, raw_features
    from acml_dist.evaluate.properties import EncoderView, fresh_like
    from acml_dist.evaluate.splits import make_split
    from acml_dist.models import ACMLModel

    rings = [float("c1" in s or "C1" in s) for s in SMILES]  # two classes in every part of the split
    labels = rings if task == "classification" else [len(s) + 3 * r for s, r in zip(SMILES, rings)]
    frame = pd.DataFrame({"smiles": SMILES, "y": labels})
    std = OmegaConf.structured(DataConfig).standardize
    data = featurize_labelled(frame, "smiles", ["y"], task, "t", "hu", std)
    model = ACMLModel({"schema": "hu", "emb_dim": 16, "num_layers": 2}, {"t": 8})
    split = make_split(data.smiles, "random", [0.6, 0.2, 0.2], 0)
    ecfg = OmegaConf.merge(
        OmegaConf.structured(EvalConfig),
        {"finetune_epochs": 3, "batch_size": 8, "progress": False, "workers": 1, "chirality": "drop",
         "mol_features": mol_features},
    )  # fmt: skip
    features = features_with_progress(data.smiles, mol_features, progress=False)

    def job() -> FitJob:
        return FitJob("kept", EncoderView(fresh_like(model, 0)), data, split, 0, True, keep=True)

    first = job()
    (fit,) = run_fits([first], ecfg, features, tmp_path / "fits")
    assert fit.predictor_dir is not None and fit.predictor_dir.parent == tmp_path / "fits"
    predictor = load_predictor(fit.predictor_dir)
    assert predictor.meta["task"] == task and predictor.meta["chirality"] == "drop"
    assert (predictor.scaler is not None) == bool(mol_features)
    test_smiles = [data.smiles[i] for i in split[2]]
    features_of_test = raw_features(predictor.meta, test_smiles)
    predicted = predict_graphs(predictor, [data.graphs[i] for i in split[2]], features_of_test)
    assert np.allclose(predicted, fit.test_pred, atol=1e-5)
    if task == "classification":
        assert ((0 < predicted) & (predicted < 1)).all()
    else:
        assert predicted.std() > 0  # in label units, not all one value
    again = job()
    (back,) = run_fits([again], ecfg, features, tmp_path / "fits")  # read back, not refitted: same folder
    assert back.predictor_dir == fit.predictor_dir and back.model is None
    if mol_features:  # a descriptor this RDKit does not have is named, not silently zero
        meta = json.loads((fit.predictor_dir / META).read_text())
        meta["feature_names"][0] = "NoSuchDescriptor"
        with pytest.raises(DataError, match="NoSuchDescriptor"):
            raw_features(meta, test_smiles)


_ORPHAN_PARENT = """
import multiprocessing as mp, os, time
from concurrent.futures import ProcessPoolExecutor
from acml_dist.evaluate.fits import _start_worker

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                               initargs=(None, 1, os.getpid()))
    pool.submit(time.sleep, 600)
    time.sleep(0.5)
    print(*pool._processes, flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's reaper may be slow to collect it); reads /proc (Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_fit_worker_ends_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline().split()[0])  # busy with a 10-minute task
        assert _alive(worker)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.time() + 15
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker outlived its killed parent"
