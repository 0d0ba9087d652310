"""`acml nmr-predict` on real local Ray: a featurised dataset's subset -> per-modality chunks + manifests,
counts that add up, rejects with reasons, resume after a partial run, refusal of another configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import kill_group

from acml_dist.config import load_config
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.modalities import iter_modality, modality_dir, read_modality
from acml_dist.data.nmr_stage import NmrStageError, predict_dataset

pytestmark = pytest.mark.integration

SMILES = [
    "CCO",
    "c1ccccc1O",
    "CC(=O)Nc1ccc(O)cc1",
    "CC(=O)O",
    "CN1CCC[C@H]1c1cccnc1",
    "O=C(O)c1ccccc1",
    "CCN(CC)CC",
    "c1ccc2ccccc2c1",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "OC1CCCCC1",
    "Cc1ccccc1N",
    "COc1ccccc1",
    "CC1=CC(=O)C=CC1=O",
    "N#Cc1ccccc1",
    "CCCCCCCC",
    "CC(C)O",
    "ClCCl",
    "O=C1CCCCC1",
    "c1ccncc1",
    "NS(N)(=O)=O",  # sulfamide: no carbon -> a 13C reject with csp5's reason, a 1H spectrum
    "CCOC(=O)C",
    "C1CCOC1",
]


def nmr(root: Path, *overrides: str) -> dict:
    cfg = load_config("nmr_predict", [f"shards={root}", "name=t", "chunk_size=5", "workers=2", *overrides])
    return predict_dataset(cfg)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    d = tmp_path_factory.mktemp("nmr")
    (d / "mols.csv").write_text("id,smiles\n" + "".join(f"m{i},{s}\n" for i, s in enumerate(SMILES)))
    out = d / "ds"
    cfg = load_config(
        "featurize",
        [
            f"input={d / 'mols.csv'}",
            f"output={out}",
            "data.chunk_size=8",
            "data.samples_per_shard=4",
            "data.exclude=[]",
            "data.split=random",
        ],
    )
    featurize_corpus(cfg)
    return out


def test_stage_writes_chunks_manifests_and_rejects_that_add_up(dataset: Path) -> None:
    manifests = nmr(dataset, "limit=0")
    assert set(manifests) == {"nmr13c", "nmr1h"}
    for modality, m in manifests.items():
        c = m["counts"]
        assert c["selected"] == len(SMILES) and c["selected"] == c["written"] + c["rejected"]
        assert m["complete"] and len(m["chunks"]) == 5
        assert sum(e["samples"] for e in m["chunks"]) == c["written"]
        rejects = (modality_dir(dataset, modality) / "rejects.jsonl").read_text().splitlines()
        assert len(rejects) == c["rejected"]
        assert m["rate_mol_per_s_per_core"] > 0 and m["molecules_computed_now"] == len(SMILES)
    c13, h1 = read_modality(dataset, "nmr13c"), read_modality(dataset, "nmr1h")
    assert (
        len(h1) == manifests["nmr1h"]["counts"]["written"]
        and len(c13) == manifests["nmr13c"]["counts"]["written"]
    )
    assert all(v.shape == (4000,) and v.dtype == np.float32 for v in c13.values())
    assert all(v.shape == (1200,) for v in h1.values())
    keys = {
        json.loads(x)["key"]: json.loads(x)
        for x in (modality_dir(dataset, "nmr13c") / "rejects.jsonl").read_text().splitlines()
    }
    [sulfamide] = [k for k, r in keys.items() if "C" not in r["smiles"]]  # a 13C reject, a 1H spectrum
    assert "carbon" in keys[sulfamide]["reason"] and sulfamide in h1
    assert manifests["nmr13c"]["reject_reasons"] == {"no_carbon": 1}
    # the stored peaks are the predicted shifts that gave each spectrum
    rec = next(iter_modality(dataset, "nmr13c"))
    assert rec["atoms"].size == rec["peaks"].size > 0
    assert rec["spectrum"][np.round((rec["peaks"] + 50) * 10).astype(int)].min() == 1.0


def test_resume_recomputes_only_the_missing_chunks(dataset: Path) -> None:
    first = nmr(dataset, "limit=0")
    before = read_modality(dataset, "nmr13c")
    work = dataset / "modalities" / "_nmr_work"
    (work / "c000001.done.json").unlink()  # killed before chunk 1 finished
    chunk2 = modality_dir(dataset, "nmr1h") / "chunk-000002.npz"
    chunk2.write_bytes(chunk2.read_bytes()[:100])  # chunk 2's 1H file truncated
    again = nmr(dataset, "limit=0")
    assert again["nmr13c"]["molecules_computed_now"] == 10
    assert again["nmr13c"]["counts"] == first["nmr13c"]["counts"]
    after = read_modality(dataset, "nmr13c")
    assert sorted(after) == sorted(before)
    assert all(np.array_equal(after[k], before[k]) for k in before)  # same conformer seeds, same spectra
    done = nmr(dataset, "limit=0")
    assert done["nmr1h"]["molecules_computed_now"] == 0


def test_another_configuration_is_refused_unless_overwrite(dataset: Path, tmp_path: Path) -> None:
    nmr(dataset, "limit=0")
    with pytest.raises(NmrStageError, match="not in this subset"):  # a subset may grow, never shrink
        nmr(dataset, "limit=10")
    with pytest.raises(NmrStageError, match="another configuration"):
        nmr(dataset, "limit=0", "h1_bins=600")
    keys = [r["key"] for r in iter_modality(dataset, "nmr1h")][:3]
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    m = nmr(dataset, f"keys_file={tmp_path / 'keys.txt'}", "nuclei=[1H]", "limit=0", "overwrite=true")
    assert set(m) == {"nmr1h"} and m["nmr1h"]["counts"]["selected"] == 3
    assert sorted(read_modality(dataset, "nmr1h")) == sorted(keys)
    with pytest.raises(NmrStageError, match="nuclei"):
        nmr(dataset, "nuclei=[19F]")


def test_cli_help_and_job_config() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "nmr-predict", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "csp5" in out and "configs/nmr_predict.yaml" in out
    job = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "nmr-predict", "--cfg", "job", "limit=7"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "limit: 7" in job and "h1_bins: 1200" in job


def test_import_spectra_cli_pairs_files_with_the_dataset(dataset: Path, tmp_path: Path) -> None:
    from acml_dist.data.spectra_import import smiles_inchikey

    mgf = tmp_path / "lib.mgf"
    mgf.write_text(
        f"BEGIN IONS\nPEPMASS=46.07\nSMILES=CCO\n29.0 100\n31.0 250\nEND IONS\n"
        f"BEGIN IONS\nPEPMASS=79.1\nINCHIKEY={smiles_inchikey('c1ccncc1')}\n52.0 30\n79.0 100\nEND IONS\n"
        "BEGIN IONS\nPEPMASS=1\nSMILES=C1CC\n10.0 1\nEND IONS\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "acml_dist.cli",
        "import-spectra",
        f"shards={dataset}",
        f"files=[{mgf}]",
        "modality=lcms",
        "kind=ms",
        "mz_max=200",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 records, 2 written, 1 rejected" in done.stdout
    m = json.loads((modality_dir(dataset, "lcms") / "manifest.json").read_text())
    assert m["reject_reasons"] == {"unparsable SMILES": 1} and m["bins"]["n_bins"] == 200
    smiles_of = {r["key"]: r["smiles"] for r in _dataset_molecules(dataset)}
    assert sorted(smiles_of[k] for k in read_modality(dataset, "lcms")) == ["CCO", "c1ccncc1"]
    bad = subprocess.run([*cmd[:5], f"files=[{tmp_path / 'x.csv'}]"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown spectrum file type" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def _dataset_molecules(root: Path) -> list[dict]:
    from acml_dist.data.modalities import iter_dataset_molecules

    return list(iter_dataset_molecules(root, ["train", "val", "test"]))


def test_killed_run_resumes_to_the_same_spectra(dataset: Path, tmp_path: Path) -> None:
    """SIGKILL of `acml nmr-predict` (driver, its Ray and workers) after two chunks; the rerun computes only
    the rest and gives the spectra and counts of a clean run."""
    import os
    import shutil
    import time

    root = tmp_path / "ds"
    shutil.copytree(dataset, root, ignore=shutil.ignore_patterns("modalities"))
    args = [f"shards={root}", "limit=0", "chunk_size=3"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "ACML_LOG_LEVEL": "WARNING"}
    cmd = [
        sys.executable,
        "-m",
        "acml_dist.cli",
        "nmr-predict",
        *args,
        "workers=1",
        "cluster.num_cpus=1",
        "cluster.object_store_memory=100000000",
    ]
    log = tmp_path / "killed.log"
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    work = root / "modalities" / "_nmr_work"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if work.exists() and len(list(work.glob("c*.done.json"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the job ended before it could be killed: {log.read_text()[-2000:]}"
    finally:
        kill_group(proc)
    assert not (modality_dir(root, "nmr13c") / "manifest.json").exists()
    resumed = predict_dataset(load_config("nmr_predict", [*args, "workers=2"]))
    assert 0 < resumed["nmr13c"]["molecules_computed_now"] < len(SMILES) - 1
    clean_root = tmp_path / "clean"
    shutil.copytree(dataset, clean_root, ignore=shutil.ignore_patterns("modalities"))
    clean = predict_dataset(load_config("nmr_predict", [f"shards={clean_root}", "limit=0", "chunk_size=3"]))
    for modality in ("nmr13c", "nmr1h"):
        assert resumed[modality]["counts"] == clean[modality]["counts"]
        a, b = read_modality(root, modality), read_modality(clean_root, modality)
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
        assert [e["sha256"] for e in resumed[modality]["chunks"]] == [
            e["sha256"] for e in clean[modality]["chunks"]
        ]
