"""`acml depict` on real local Ray: a featurised dataset's subset -> the `image` modality (uint8 chunks +
manifest), counts that add up, rejects with reasons, resume after a partial run, refusal of another
configuration, a subset that grows, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from acml_dist.config import load_config
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.image_stage import DepictStageError, depict_chunk, depict_dataset
from acml_dist.data.modalities import iter_dataset_molecules, modality_dir, read_images, read_modality

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
    "CCOC(=O)C",
    "C1CCOC1",
    "CCCCCCCCCCCCCCCCCCCC",
]


def depict(root: Path, *overrides: str) -> dict:
    cfg = load_config("depict", [f"shards={root}", "name=t", "chunk_size=5", "workers=2", *overrides])
    return depict_dataset(cfg)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    d = tmp_path_factory.mktemp("depict")
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


def test_stage_writes_images_manifest_and_rejects_that_add_up(dataset: Path) -> None:
    m = depict(dataset, "limit=0", "max_heavy_atoms=15", "overwrite=true")
    c = m["counts"]
    assert c["selected"] == len(SMILES) == c["written"] + c["rejected"]
    from rdkit import Chem

    heavy = [s for s in SMILES if Chem.MolFromSmiles(s).GetNumHeavyAtoms() > 15]
    assert c["rejected"] == len(heavy) == m["reject_reasons"]["too_many_heavy_atoms"]
    rejects = [
        json.loads(x) for x in (modality_dir(dataset, "image") / "rejects.jsonl").read_text().splitlines()
    ]
    assert sorted(r["smiles"] for r in rejects) == sorted(heavy) and all(
        "> 15" in r["reason"] for r in rejects
    )
    assert m["kind"] == "image" and m["image"] == {"size": 224, "dtype": "uint8", "channels": 1, "paper": 255}
    assert m["complete"] and len(m["chunks"]) == 5 and sum(e["samples"] for e in m["chunks"]) == c["written"]
    assert m["rate_mol_per_s_per_core"] > 0 and 0 < m["bytes_per_image"] < 224 * 224
    keys, images = read_images(dataset)
    assert images.shape == (c["written"], 224, 224) and images.dtype == np.uint8
    # Img2Mol preprocessing: white border all round, ink inside, full contrast
    assert (images[:, :8, :] == 255).all() and (images[:, :, -8:] == 255).all()
    assert (images.reshape(len(images), -1).min(1) == 0).all()
    assert sorted(read_modality(dataset, "image")) == sorted(keys)  # the generic reader reads images too


def test_subset_limit_keys_file_and_store_size(dataset: Path, tmp_path: Path) -> None:
    m = depict(dataset, "limit=7", "store_size=112", "overwrite=true")
    assert m["counts"] == {"selected": 7, "written": 7, "rejected": 0}
    keys, images = read_images(dataset)
    first7 = [r["key"] for r in iter_dataset_molecules(dataset, ["train", "val", "test"])][:7]
    assert keys == first7 and images.shape == (7, 112, 112)
    (tmp_path / "keys.txt").write_text("\n".join(first7[2:5]) + "\n")
    m = depict(dataset, f"keys_file={tmp_path / 'keys.txt'}", "limit=0", "overwrite=true")
    assert m["counts"]["selected"] == 3 and read_images(dataset)[0] == first7[2:5]


def test_resume_recomputes_only_the_missing_chunks_and_refuses_another_config(dataset: Path) -> None:
    first = depict(dataset, "limit=0", "overwrite=true")
    _, before = read_images(dataset)
    work = dataset / "modalities" / "_image_work"
    (work / "c000001.done.json").unlink()  # killed before chunk 1 finished
    chunk3 = modality_dir(dataset, "image") / "chunk-000003.npz"
    chunk3.write_bytes(chunk3.read_bytes()[:100])  # chunk 3 truncated
    again = depict(dataset, "limit=0")
    assert again["molecules_computed_now"] == 10 and again["counts"] == first["counts"]
    assert [e["sha256"] for e in again["chunks"]] == [e["sha256"] for e in first["chunks"]]
    assert np.array_equal(read_images(dataset)[1], before)  # deterministic drawing: same bytes
    assert depict(dataset, "limit=0")["molecules_computed_now"] == 0
    with pytest.raises(DepictStageError, match="another configuration"):
        depict(dataset, "limit=0", "border=5")
    with pytest.raises(DepictStageError, match="store_size"):
        depict(dataset, "store_size=300")


def test_a_grown_subset_computes_only_its_new_molecules_and_a_shrunk_one_is_refused(
    dataset: Path, tmp_path: Path
) -> None:
    full = depict(dataset, "limit=0", "overwrite=true")
    full_images = dict(zip(*read_images(dataset)))
    order = [r["key"] for r in iter_dataset_molecules(dataset, ["train", "val", "test"])]
    (tmp_path / "keys.txt").write_text("\n".join(order[::3]) + "\n")  # every third molecule
    small = depict(dataset, f"keys_file={tmp_path / 'keys.txt'}", "limit=0", "overwrite=true")
    first_chunks = [e["sha256"] for e in small["chunks"]]
    grown = depict(dataset, "limit=0", "chunk_size=4")  # every molecule: planned chunks stay, new ones of 4
    assert grown["molecules_computed_now"] == len(SMILES) - small["counts"]["selected"]
    new_chunks = [e["samples"] for e in grown["chunks"][len(first_chunks) :]]
    assert max(new_chunks) == 4 and sum(new_chunks) == grown["molecules_computed_now"]
    assert grown["counts"] == full["counts"] and grown["counts"]["selected"] == len(SMILES)
    assert [e["sha256"] for e in grown["chunks"]][: len(first_chunks)] == first_chunks  # never moved
    grown_images = dict(zip(*read_images(dataset)))  # the same image for every molecule as drawn at once
    assert grown_images.keys() == full_images.keys()
    assert all(np.array_equal(grown_images[k], full_images[k]) for k in full_images)
    assert depict(dataset, "limit=0")["molecules_computed_now"] == 0
    with pytest.raises(DepictStageError, match="not in this subset"):
        depict(dataset, "limit=5")
    assert depict(dataset, "limit=5", "overwrite=true")["counts"]["selected"] == 5
    plan = dataset / "modalities" / "_image_work" / "plan.json"
    plan.write_text(json.dumps({"config_hash": "0", "chunks": 1}))  # the plan format before subsets grew
    with pytest.raises(DepictStageError, match="earlier acml-dist: pass overwrite=true"):
        depict(dataset, "limit=5")


def test_a_bad_smiles_is_a_counted_reject_not_a_crash(tmp_path: Path) -> None:
    params = {"modality": "image", "size": 224, "border": 15, "store_size": 64, "max_heavy_atoms": 0}
    items = [("a", "CCO"), ("b", "C1CC"), ("c", ""), ("d", "c1ccccc1")]
    done = depict_chunk(0, items, params, str(tmp_path))
    assert done["selected"] == 4 and done["samples"] == 2 and done["rejected"] == 2
    assert done["reasons"] == {"unparsable": 2}
    lines = (tmp_path / "_image_work" / "c000000.rejects.jsonl").read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["b", "c"]


def test_cli_help_and_one_line_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "depict", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "224x224" in out and "configs/depict.yaml" in out
    bad = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "depict", f"shards={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not a complete featurised dataset" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_embedding_with_the_image_teacher_marks_only_depicted(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`acml embed` with the image CNN reading `modalities/image/` (`render: false`, as in
    `teachers=multimodal`): the cache's presence is the depicted key set; no output is one clear error."""
    import shutil

    import torch

    from acml_dist.config import config_dir
    from acml_dist.data.loader import iter_samples
    from acml_dist.errors import DataError
    from acml_dist.teachers.cache import embed_dataset
    from acml_dist.teachers.image_cnn import build_image_cnn

    root = tmp_path / "ds"
    shutil.copytree(dataset, root, ignore=shutil.ignore_patterns("modalities"))
    torch.manual_seed(0)
    weights = tmp_path / "image.pt"
    torch.save(build_image_cnn(out_dim=8, width=4, resolution=32).state_dict(), weights)
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "teachers" / "img_test.yaml").write_text(
        f"image: {{kind: image_cnn, modality: image, path: '{weights}',\n"
        "        params: {width: 4, resolution: 32, out_dim: 8, render: false}}\n"
    )
    monkeypatch.setenv("ACML_CONFIG_DIR", str(configs))
    embed = load_config("embed", [f"shards={root}", "cluster.num_cpus=2", "teachers=img_test"])
    with pytest.raises(DataError, match="acml depict"):
        embed_dataset(embed)
    molecules = [r["key"] for r in iter_dataset_molecules(root, ["train", "val", "test"])]
    (tmp_path / "keys.txt").write_text("".join(k + "\n" for k in molecules[::3]))
    depict(root, f"keys_file={tmp_path / 'keys.txt'}", "limit=0")
    summary = embed_dataset(embed)["teachers"]["image"]
    assert sum(s["missing"] for s in summary["splits"].values()) == len(molecules) - len(molecules[::3])
    seen = 0
    for split in ("train", "val", "test"):
        for s in iter_samples(root, split, teachers=["image"]):
            assert (s["embeddings"]["image"] is not None) == (s["key"] in molecules[::3]), s["key"]
            seen += 1
    assert seen == len(molecules)
