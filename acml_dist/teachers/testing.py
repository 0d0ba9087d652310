"""Tiny featurised datasets in the ARCHITECTURE.md shard format, for tests and the quick benchmark.

Uses `acml_dist.chem.featurize.mol_to_graph` when that module exists; otherwise writes a minimal Hu-schema
graph.npz itself (the teachers only read `smiles.txt`, so the graph arrays just have to be well-formed)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from acml_dist.teachers.shards import sha256_file, write_json_atomic

DEMO_SMILES = [
    "CCO", "CCN", "CCCO", "CCCN", "CC(=O)O", "CC(=O)N", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1",
    "c1ccncc1", "Cc1ccncc1", "C1CCCCC1", "C1CCNCC1", "C1CCOCC1", "CC(C)O", "CC(C)N", "OCCO", "NCCN",
    "c1ccc2ccccc2c1", "CC(=O)Oc1ccccc1C(=O)O", "CN1CCC[C@H]1c1cccnc1", "Clc1ccccc1", "Brc1ccccc1",
    "c1ccc[nH]1", "c1ccoc1", "c1ccsc1", "CCOC(=O)C", "CCCCCC", "CCCCCCCC",
]  # fmt: skip


def _graph_npz(smiles: str) -> bytes:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    try:
        from acml_dist.chem.featurize import mol_to_graph  # the real featuriser, once it exists

        arrays = mol_to_graph(mol)
    except ImportError:
        x = np.array([[min(a.GetAtomicNum(), 119), 0] for a in mol.GetAtoms()], dtype=np.uint8)
        pairs = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
        src, dst = [i for i, _ in pairs], [j for _, j in pairs]
        ei = np.array([src + dst, dst + src])
        arrays = {
            "edge_index": ei.astype(np.int32).reshape(2, -1),
            "hu_x": x,
            "hu_edge_attr": np.zeros((ei.shape[1], 2), dtype=np.uint8),
        }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_dataset(root: Path, splits: dict[str, list[str]], samples_per_shard: int = 8) -> dict:
    """Write <root>/<split>/shard-XXXXXX.tar + manifest.json for the given SMILES; returns the manifest."""
    import webdataset as wds
    from rdkit import Chem

    root = Path(root)
    manifest: dict = {"schema_version": 1, "splits": {}}
    for split, smiles in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        entries = []
        for n, start in enumerate(range(0, len(smiles), samples_per_shard)):
            path = root / split / f"shard-{n:06d}.tar"
            chunk = smiles[start : start + samples_per_shard]
            with wds.TarWriter(str(path)) as sink:
                for smi in chunk:
                    can = Chem.MolToSmiles(Chem.MolFromSmiles(smi))
                    key = "h" + hashlib.sha1(f"{split}:{start}:{can}".encode()).hexdigest()[:16]
                    meta = {"inchikey": Chem.MolToInchiKey(Chem.MolFromSmiles(can)), "source": "test"}
                    sink.write(
                        {
                            "__key__": key,
                            "graph.npz": _graph_npz(can),
                            "smiles.txt": can.encode(),
                            "meta.json": json.dumps(meta).encode(),
                        }
                    )
            entries.append(
                {"name": f"{split}/{path.name}", "samples": len(chunk), "sha256": sha256_file(path)}
            )
        manifest["splits"][split] = {"samples": len(smiles), "shards": entries}
    write_json_atomic(root / "manifest.json", manifest)
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
