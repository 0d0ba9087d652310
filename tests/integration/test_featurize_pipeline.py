"""Featurisation on real local Ray: counts, rejects, read-back graphs, determinism, resume, loader."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from acml_dist.chem.featurize import GRAPH_KEYS, mol_to_graph_reference
from acml_dist.chem.standardize import standardize
from acml_dist.config import load_config
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.loader import ShardMismatch, iter_samples, make_loader
from acml_dist.data.shards import (
    FORMAT,
    SCHEMA_VERSION,
    SPLITS,
    atomic_write,
    encode_cache_shard,
    load_graph_shard,
    read_manifest,
    sha256_file,
)

pytestmark = pytest.mark.integration

GOOD = [
    "CCO",
    "c1ccccc1O",
    "CC(=O)Nc1ccc(O)cc1",
    "C/C=C/C(=O)O",
    "C[C@H](N)C(=O)O",
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
]


def write_csv(path: Path) -> None:
    rows = [f"m{i},{s}" for i, s in enumerate(GOOD)]
    rows += [
        "bad1,not_a_smiles((",
        "bad2,",
        "salt,CC(=O)[O-].[Na+]",
        "dup1,OCC",
        "dup2,Oc1ccccc1",
        "leak,CCCCCCCCO",
    ]
    path.write_text("id,smiles\n" + "\n".join(rows) + "\n")


def write_pubchem_sdf(path: Path, items: list[tuple[int, str]]) -> None:
    """A PubChem Compound_*.sdf.gz: mol blocks with PUBCHEM_COMPOUND_CID data items."""
    from rdkit import Chem

    with gzip.open(path, "wt") as fh:
        for cid, smi in items:
            fh.write(Chem.MolToMolBlock(Chem.MolFromSmiles(smi)))
            fh.write(f"> <PUBCHEM_COMPOUND_CID>\n{cid}\n\n$$$$\n")


def run(out: Path, overrides: list[str]) -> dict:
    cfg = load_config(
        "featurize",
        [f"output={out}", "data.chunk_size=6", "data.samples_per_shard=3", "data.exclude=[]", *overrides],
    )
    return featurize_corpus(cfg)


@pytest.fixture(scope="module")
def csv_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    write_csv(d / "mols.csv")
    (d / "leak.txt").write_text("CCCCCCCCO\n")
    return d


@pytest.fixture(scope="module")
def featurised(ray_local, csv_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "a"
    run(
        out,
        [
            f"input={csv_input / 'mols.csv'}",
            "data.id_column=id",
            f"data.exclude=[{csv_input / 'leak.txt'}]",
            "data.images=true",
            "data.split=random",
            "data.split_fractions=[0.6,0.2,0.2]",
        ],
    )
    return out


def test_counts_and_rejects(featurised: Path) -> None:
    m = read_manifest(featurised)
    c = m["counts"]
    assert c == {
        "read": 21,
        "written": 16,
        "rejected": 2,
        "duplicates": 2,
        "excluded": 1,
    }  # salt kept, stripped
    assert c["read"] == c["written"] + c["rejected"] + c["duplicates"] + c["excluded"]
    rejects = [json.loads(x) for x in (featurised / "rejects.jsonl").read_text().splitlines()]
    assert {(r["id"], r["reason"].split(":")[0]) for r in rejects} == {
        ("mol_bad1", "invalid_smiles"),
        ("mol_bad2", "empty"),
    }
    # RDKit's own words travel with the category, and a file input is labelled as such
    assert any("SMILES Parse Error" in r["reason"] for r in rejects if r["id"] == "mol_bad1")
    assert {r["source"] for r in rejects} == {"file"}
    assert m["reject_reasons"] == {"empty": 1, "invalid_smiles": 1}
    assert sum(s["samples"] for s in m["splits"].values()) == 16 and m["complete"]
    for split in m["splits"].values():
        for e in split["shards"]:
            assert sha256_file(featurised / e["name"]) == e["sha256"] and e["samples"] <= 3
    assert not (featurised / "_work").exists()


def test_read_back_equals_direct_featurisation(featurised: Path) -> None:
    seen = {}
    for split in SPLITS:
        for s in iter_samples(featurised, split):
            res = standardize(s["meta"]["input"])
            ref = mol_to_graph_reference(res.mol)
            for k in GRAPH_KEYS:
                np.testing.assert_array_equal(s["arrays"][k], ref[k])
            assert s["smiles"] == res.smiles and s["meta"]["inchikey"] == res.inchikey
            assert s["image"][:8] == b"\x89PNG\r\n\x1a\n"
            seen[s["key"]] = s["smiles"]
    assert seen["mol_salt"] == "CC(=O)O" and "mol_dup1" not in seen and "mol_dup2" not in seen
    assert "mol_m0" in seen and "mol_leak" not in seen


def test_deterministic_and_resumable(ray_local, csv_input: Path, featurised: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = [
        f"input={csv_input / 'mols.csv'}",
        "data.id_column=id",
        f"data.exclude=[{csv_input / 'leak.txt'}]",
        "data.images=true",
        "data.split=random",
        "data.split_fractions=[0.6,0.2,0.2]",
    ]
    run(out, args)
    ref = read_manifest(featurised)

    def digests(root: Path) -> dict[str, str]:
        return {
            e["name"]: sha256_file(root / e["name"])
            for s in read_manifest(root)["splits"].values()
            for e in s["shards"]
        }

    assert digests(out) == digests(featurised) and read_manifest(out)["config_hash"] == ref["config_hash"]
    # Leave the state a kill midway leaves: manifest not complete, a shard missing, one half-written.
    m = read_manifest(out)
    m["complete"] = False
    (out / "manifest.json").write_text(json.dumps(m))
    names = sorted(digests(out))
    (out / names[0]).unlink()
    (out / names[1]).write_bytes((out / names[1]).read_bytes()[:700])  # torn: fails its sha256
    resumed = run(out, args)
    assert resumed["complete"] and digests(out) == digests(featurised)
    with pytest.raises(RuntimeError, match="another configuration"):
        run(out, [*args, "data.seed=5"])


def test_formats_and_scaffold_split(ray_local, tmp_path: Path) -> None:
    sdf = tmp_path / "Compound_000000001_000500000.sdf.gz"
    write_pubchem_sdf(sdf, [(2244, "CC(=O)Oc1ccccc1C(=O)O"), (702, "CCO"), (1983, "CC(=O)Nc1ccc(O)cc1")])
    m = run(tmp_path / "sdf", [f"input={sdf}", "data.id_prefix=pubchem"])
    assert m["counts"]["written"] == 3
    keys = {s["key"] for split in SPLITS for s in iter_samples(tmp_path / "sdf", split)}
    assert keys == {"pubchem_2244", "pubchem_702", "pubchem_1983"}
    cid = tmp_path / "CID-SMILES.gz"
    cid.write_bytes(gzip.compress("\n".join(f"{i}\t{s}" for i, s in enumerate(GOOD, 1)).encode() + b"\n"))
    m = run(tmp_path / "cid", [f"input={cid}", "data.id_prefix=pubchem"])
    assert m["counts"]["written"] == len(GOOD)
    scaffolds = {
        split: {s["meta"]["scaffold"] for s in iter_samples(tmp_path / "cid", split)} for split in SPLITS
    }
    assert not (scaffolds["train"] & scaffolds["val"]) and not (scaffolds["train"] & scaffolds["test"])


def _write_cache(root: Path, teacher: str, dim: int, skip_every: int = 3, wrong_key: bool = False) -> None:
    """A cache in the format of acml_dist.data.shards: row i of each shard = i, every third missing."""
    edir = root / "embeddings" / teacher
    dataset = read_manifest(root)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "dataset_hash": dataset["config_hash"],
        "teacher": teacher,
        "kind": "fingerprint",
        "modality": "smiles",
        "dim": dim,
        "weights_hash": "abc",
        "splits": {},
    }
    for split, info in dataset["splits"].items():
        entries = []
        for e in info["shards"]:
            packed = load_graph_shard(root, e)
            keys = packed.blobs["key"]
            if wrong_key:
                keys = (keys[0].copy(), keys[1])
                keys[0][0] ^= 1
            rows = np.arange(packed.n)
            emb = np.repeat(rows[:, None], dim, axis=1).astype(np.float32)
            data = encode_cache_shard(keys, emb, rows % skip_every != 0, bits=False)
            atomic_write(edir / e["name"], data)
            entries.append(
                {
                    "name": e["name"],
                    "samples": packed.n,
                    "sha256": sha256_bytes(data),
                    "graph_sha256": e["sha256"],
                }
            )
        manifest["splits"][split] = {"samples": info["samples"], "shards": entries}
    (edir / "manifest.json").write_text(json.dumps(manifest))


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_loader_equal_batches_and_embeddings(featurised: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(featurised, root)
    _write_cache(root, "fp", 8)
    train_n = read_manifest(root)["splits"]["train"]["samples"]
    batches = list(make_loader(root, "train", 4, teachers=["fp"]))
    assert sum(len(b) for b in batches) == train_n  # one rank, no budget: every sample once
    assert [k for b in batches for k in b.keys] == [s["key"] for s in iter_samples(root, "train")]
    b = batches[0]
    assert b.graph.x.shape[1] == 2 and b.embeddings["fp"].shape == (len(b), 8)
    assert b.masks["fp"].tolist() == [i % 3 != 0 for i in range(len(b))]
    assert b.images is not None and all(i[:4] == b"\x89PNG" for i in b.images)
    again = [x.keys for x in make_loader(root, "train", 4, teachers=["fp"])]
    assert again == [x.keys for x in batches]  # deterministic without shuffle
    ogb = next(iter(make_loader(root, "train", 4, schema="ogb")))
    assert ogb.graph.x.shape[1] == 9 and ogb.graph.edge_attr.shape[1] == 3
    for shuffle in (False, True):
        per_rank = [
            list(make_loader(root, "train", 2, rank=r, world_size=2, shuffle=shuffle, seed=1)) for r in (0, 1)
        ]
        assert len(per_rank[0]) == len(per_rank[1]) == train_n // 4  # every rank the same batch count
    budget = [list(make_loader(root, "train", 2, rank=r, world_size=2, batches_per_epoch=5)) for r in (0, 1)]
    assert [len(x) for x in budget] == [5, 5]
    with pytest.raises(ShardMismatch, match="weights"):
        make_loader(root, "train", 4, teachers=["fp"], teacher_hashes={"fp": "other"})
    _write_cache(root, "bad", 4, wrong_key=True)
    with pytest.raises(ShardMismatch, match="keys differ"):
        list(make_loader(root, "train", 4, teachers=["bad"]))
