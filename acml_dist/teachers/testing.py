"""Tiny featurised datasets in the shard format of `acml_dist.data.shards`, for tests and the quick benchmark
(written through that module's writer)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from acml_dist.data.packed import Packed
from acml_dist.data.shards import (
    FORMAT,
    SCHEMA_VERSION,
    atomic_write,
    encode_graph_shard,
    shard_name,
    write_manifest,
)

DEMO_SMILES = [
    "CCO", "CCN", "CCCO", "CCCN", "CC(=O)O", "CC(=O)N", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1",
    "c1ccncc1", "Cc1ccncc1", "C1CCCCC1", "C1CCNCC1", "C1CCOCC1", "CC(C)O", "CC(C)N", "OCCO", "NCCN",
    "c1ccc2ccccc2c1", "CC(=O)Oc1ccccc1C(=O)O", "CN1CCC[C@H]1c1cccnc1", "Clc1ccccc1", "Brc1ccccc1",
    "c1ccc[nH]1", "c1ccoc1", "c1ccsc1", "CCOC(=O)C", "CCCCCC", "CCCCCCCC",
]  # fmt: skip


def write_dataset(root: Path, splits: dict[str, list[str]], samples_per_shard: int = 8) -> dict:
    """Write <root>/<split>/shard-XXXXXX.npz + manifest.json for the given SMILES (the format of
    `acml_dist.data.shards`, featurised with `chem.featurize.mol_to_graph`); returns the manifest."""
    from rdkit import Chem

    from acml_dist.chem.featurize import mol_to_graph

    root = Path(root)
    manifest: dict = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "complete": True,
        "config_hash": hashlib.sha1(json.dumps(splits, sort_keys=True).encode()).hexdigest()[:16],
        "splits": {},
    }
    for split, smiles in splits.items():
        entries = []
        for n, start in enumerate(range(0, len(smiles), samples_per_shard)):
            chunk = smiles[start : start + samples_per_shard]
            mols = [Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(s))) for s in chunk]
            cans = [Chem.MolToSmiles(m) for m in mols]
            keys = ["h" + hashlib.sha1(f"{split}:{start}:{c}".encode()).hexdigest()[:16] for c in cans]
            metas = [{"inchikey": Chem.MolToInchiKey(m), "source": "test"} for m in mols]
            packed = Packed.from_graphs(
                [mol_to_graph(m) for m in mols],
                {
                    "key": [k.encode() for k in keys],
                    "smiles.txt": [c.encode() for c in cans],
                    "meta.json": [json.dumps(m).encode() for m in metas],
                },
            )
            data = encode_graph_shard(packed)
            name = shard_name(split, n)
            atomic_write(root / name, data)
            entries.append({"name": name, "samples": len(chunk), "sha256": hashlib.sha256(data).hexdigest()})
        manifest["splits"][split] = {"samples": len(smiles), "shards": entries}
    write_manifest(root, manifest)
    return manifest


def moses_smiles(n: int, offset: int = 0) -> list[str]:
    """The first n SMILES (after offset) of the MOSES test file shipped in the molsets package."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("molsets is not installed (pip install --no-deps molsets)")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "data" / "test.csv.gz"
    out: list[str] = []
    with gzip.open(path, "rt") as f:
        next(f)  # header
        for i, line in enumerate(f):
            if i >= offset:
                out.append(line.strip().split(",")[0])
            if len(out) >= n:
                break
    return out
