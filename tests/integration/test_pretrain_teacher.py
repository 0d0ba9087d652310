"""`acml pretrain-teacher nmr13c|nmr1h|ms` end to end on data the test makes: a featurised dataset (real
Ray), a cached fingerprint teacher as the frozen target, predicted 13C / 1H spectra (`acml nmr-predict`),
mass spectra in an MGF file the test writes (`acml import-spectra`). Each modality trains for a few epochs
in a real MLflow store (SQLite + artifact folder in a temp dir; MLflow 3 refuses the plain file store),
is registered as acml-teacher-<name>, and loads back from the registry giving the saved encoder's
embeddings. Then the 1H teacher trains on two DeepSpeed ranks through the `deepspeed` launcher (gloo):
one MLflow run and one registration, from rank 0. Missing inputs give one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port

from acml_dist.cli import main
from acml_dist.data.modalities import read_modality

pytestmark = pytest.mark.integration

SMILES = [
    "CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CC(=O)O", "CN1CCC[C@H]1c1cccnc1", "O=C(O)c1ccccc1",
    "CCN(CC)CC", "c1ccc2ccccc2c1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "OC1CCCCC1", "Cc1ccccc1N", "COc1ccccc1",
    "CC1=CC(=O)C=CC1=O", "N#Cc1ccccc1", "CCCCCCCC", "CC(C)O", "ClCCl", "O=C1CCCCC1", "c1ccncc1",
    "NS(N)(=O)=O", "CCOC(=O)C", "C1CCOC1",
]  # fmt: skip


def synthetic_mgf(path: Path, smiles: list[str]) -> None:
    """An MGF with one spectrum per molecule: the molecular ion and the fragments of each acyclic single
    bond (nominal masses), plus one record that cannot be paired and one broken record."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    blocks = []
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        peaks = {round(Descriptors.ExactMolWt(mol)): 100.0}
        for bond in mol.GetBonds():
            if bond.IsInRing() or bond.GetBondType() != Chem.BondType.SINGLE:
                continue
            cut = Chem.FragmentOnBonds(mol, [bond.GetIdx()], addDummies=False)
            for frag in Chem.GetMolFrags(cut, asMols=True):
                peaks.setdefault(round(Descriptors.ExactMolWt(frag)), 40.0)
        lines = "\n".join(f"{mz:.1f} {h}" for mz, h in sorted(peaks.items()))
        blocks.append(f"BEGIN IONS\nSPECTRUMID=T{i}\nSMILES={smi}\n{lines}\nEND IONS\n")
    blocks.append("BEGIN IONS\nSPECTRUMID=X\nSMILES=C1=CC=CC=C1CCCCCCCCCCBr\n91.0 100.0\nEND IONS\n")
    blocks.append("BEGIN IONS\nSPECTRUMID=Y\nSMILES=CCO\n45.0 oops\nEND IONS\n")
    path.write_text("\n".join(blocks))


def acml(*args: str) -> int:
    return main(list(args))


def test_pretrain_teacher_each_modality_tracks_registers_and_loads_back(
    tmp_path: Path, ray_local, mlflow_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    from acml_dist.teachers import load_teacher

    (tmp_path / "mols.csv").write_text("id,smiles\n" + "".join(f"m{i},{s}\n" for i, s in enumerate(SMILES)))
    root = tmp_path / "ds"
    common = [f"shards={root}", f"runs_root={tmp_path / 'runs'}", "target=morgan"]
    # missing inputs, one line each, before anything exists
    assert acml("pretrain-teacher", "ms", *common) == 2
    assert "no featurised dataset" in capsys.readouterr().err
    assert acml("featurize", f"input={tmp_path / 'mols.csv'}", f"output={root}", "data.exclude=[]") == 0
    capsys.readouterr()
    assert acml("pretrain-teacher", "ms", *common) == 2
    err = capsys.readouterr().err
    assert "no ms spectra" in err and "acml import-spectra" in err and err.count("\n") == 1
    synthetic_mgf(tmp_path / "spectra.mgf", SMILES)
    files = f"files=[{tmp_path / 'spectra.mgf'}]"
    assert acml("import-spectra", f"shards={root}", files, "modality=ms", "kind=ms", "mz_max=400") == 0
    assert len(read_modality(root, "ms")) == len(SMILES)
    capsys.readouterr()
    assert acml("pretrain-teacher", "ms", *common) == 2
    assert "no cached morgan embeddings" in capsys.readouterr().err
    assert acml("embed", f"shards={root}", "teachers=fingerprint") == 0
    assert acml("nmr-predict", f"shards={root}", "limit=0", "nuclei=[13C,1H]", "chunk_size=11") == 0
    capsys.readouterr()

    client = mlflow.MlflowClient()
    for modality in ("nmr13c", "nmr1h", "ms"):
        out = tmp_path / "runs" / f"teacher-{modality}"
        train = [*common, "epochs=40", "batch_size=8", "val_fraction=0.25", "pool=1000", "threads=1"]
        isomers = modality == "nmr1h"  # one teacher in batches of isomers (formulas from the dataset's meta)
        assert acml("pretrain-teacher", modality, *train, f"isomer_batches={isomers}") == 0
        printed = capsys.readouterr().out
        assert f"acml-teacher-{modality} v1" in printed and "R@1 untrained twin" in printed
        n = len(read_modality(root, modality))
        assert f"{modality}: {n} spectra, {n} paired with a morgan embedding" in printed
        name = f"acml-teacher-{modality}"
        version = client.get_model_version(name, "1")
        run = client.get_run(version.run_id)
        assert run.data.params["modality"] == modality and run.data.params["target"] == "morgan"
        assert run.data.params["isomer_batches"] == str(isomers)
        bins = {"nmr13c": 10, "nmr1h": 10, "ms": 0}[modality]  # the default jitter: 1 ppm, 0.1 ppm, none
        assert run.data.params["peak_shift_bins"] == str(bins)
        losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert len(losses) == 40 and losses[-1] < 0.5 * losses[0]
        m = run.data.metrics
        assert {"val_r1", "untrained_val_r1", "chance_r1"} <= set(m) and m["n_val"] >= 4
        assert m["train_r1"] >= 0.8 and m["train_r1"] > 2 * m["untrained_train_r1"]
        assert float(version.tags["val_r1"]) == m["val_r1"]
        assert "pretrain_teacher.png" in [a.path for a in client.list_artifacts(run.info.run_id)]
        # the registered teacher (weights + teacher.json) gives the trained encoder's embeddings
        spectra = read_modality(root, modality)
        samples = [{f"{modality}.npy": v} for v in list(spectra.values())[:5]]
        kind = "cress_nmr13c" if modality == "nmr13c" else "conv1d_spectrum"
        registered = load_teacher(modality, {"kind": kind, "path": f"models:/{name}/1", "device": "cpu"})
        assert registered.modality == modality and registered.dim == 768
        import json

        local = load_teacher(modality, json.loads((out / "teacher_config.json").read_text()))
        got, want = registered.encode_samples(samples).numpy(), local.encode_samples(samples).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert registered.weights_hash() == version.tags["weights_hash"]
        params = {"n_bins": len(next(iter(spectra.values()))), "random_init": True}
        untrained = load_teacher(modality, {"kind": kind, "modality": modality, "params": params})
        assert not np.allclose(untrained.encode_samples(samples).numpy(), got, atol=1e-3)
    # the last table lists every trained teacher of this registry
    assert all(f"acml-teacher-{m} v1" in printed for m in ("nmr13c", "nmr1h", "ms"))

    # two data-parallel ranks, launched as a user would; rank 0 alone tracks and registers
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    launcher = [str(bin_dir / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
                "--no_local_rank", "--module", "acml_dist.cli"]  # fmt: skip
    cmd = [*launcher, "pretrain-teacher", "nmr1h", *common, "epochs=40", "batch_size=4", "val_fraction=0.25",
           "teacher_name=nmr1h_dp", f"tracking_uri={mlflow_store}"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("acml-teacher-nmr1h_dp v1") == 1  # one table, rank 0's
    version = client.get_model_version("acml-teacher-nmr1h_dp", "1")
    run = client.get_run(version.run_id)
    assert run.data.params["world_size"] == "2"
    assert len(client.search_runs([run.info.experiment_id], "params.world_size = '2'")) == 1
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert len(losses) == 40 and losses[-1] < 0.5 * losses[0]
    assert (
        run.data.metrics["train_r1"] >= 0.8
        and run.data.metrics["train_r1"] > 2 * run.data.metrics["untrained_train_r1"]
    )
