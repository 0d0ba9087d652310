"""The packed shard format and the slicing loader without Ray: gathers equal PyG's collate, every read
verifies (truncated, flipped, missing, foreign, mismatched shards and caches are named), old schemas are
refused, the lenient policy skips and counts, every rank gets the same number of batches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import DEMO_SMILES, write_dataset

from acml_dist.data.loader import graph_from_npz, iter_samples, make_loader
from acml_dist.data.packed import concat
from acml_dist.data.shards import (
    SchemaError,
    ShardError,
    ShardMismatch,
    cache_dir,
    cache_manifest_body,
    dataset_manifest,
    load_graph_shard,
    write_json,
)

pytestmark = pytest.mark.unit


def _dataset(root: Path, smiles: list[str], per_shard: int = 7) -> Path:
    write_dataset(root, {"train": smiles, "test": smiles[:6]}, samples_per_shard=per_shard)
    _cache(root, "fp", 16)
    return root


def _cache(root: Path, teacher: str, dim: int, sparse: bool = True) -> None:
    """A bit cache through the format's writer: row i of a shard has bit (i mod dim) set; with `sparse`,
    every fourth row (i mod 4 = 0) is missing."""
    import hashlib

    from acml_dist.data.shards import atomic_write, encode_cache_shard

    splits = {}
    for split, info in dataset_manifest(root)["splits"].items():
        entries = []
        for e in info["shards"]:
            keys = load_graph_shard(root, e).blobs["key"]
            emb = np.eye(dim, dtype=np.float32)[np.arange(e["samples"]) % dim]
            present = (np.arange(e["samples"]) % 4 != 0) | (not sparse)
            data = encode_cache_shard(keys, emb, present, bits=True)
            atomic_write(cache_dir(root, teacher) / e["name"], data)
            sha = hashlib.sha256(data).hexdigest()
            entries.append(
                {**e, "sha256": sha, "graph_sha256": e["sha256"], "missing": int((~present).sum())}
            )
        missing = sum(e["missing"] for e in entries)
        splits[split] = {"samples": info["samples"], "missing": missing, "shards": entries}
    info = {"name": teacher, "kind": "fingerprint", "modality": "smiles", "dim": dim, "weights_hash": "w"}
    write_json(cache_dir(root, teacher) / "manifest.json", cache_manifest_body(root, info, True, splits))


@pytest.fixture()
def ds(tmp_path: Path) -> Path:
    return _dataset(tmp_path / "ds", DEMO_SMILES)


def test_batches_equal_pyg_collate_and_take_concat_roundtrip(ds: Path) -> None:
    from torch_geometric.data import Batch

    samples = list(iter_samples(ds, "train", ["fp"]))
    batches = list(make_loader(ds, "train", 8, teachers=["fp"]))
    assert [k for b in batches for k in b.keys] == [s["key"] for s in samples]
    for n, b in enumerate(batches):
        part = samples[8 * n : 8 * n + len(b)]
        ref = Batch.from_data_list([graph_from_npz(s["arrays"]) for s in part])
        for name in ("x", "edge_index", "edge_attr", "batch", "ptr"):
            assert getattr(b.graph, name).equal(getattr(ref, name)), name
        assert b.graph.num_graphs == len(part) and b.smiles == [s["smiles"] for s in part]
        assert b.masks["fp"].tolist() == [s["embeddings"]["fp"] is not None for s in part]
        for row, s in zip(b.embeddings["fp"].numpy(), part):
            if s["embeddings"]["fp"] is not None:
                np.testing.assert_array_equal(row, s["embeddings"]["fp"])
    shards = [load_graph_shard(ds, e) for e in dataset_manifest(ds)["splits"]["train"]["shards"]]
    pool = concat(shards)
    perm = np.random.default_rng(0).permutation(pool.n)
    taken = pool.take(perm)
    for i in (0, 5, pool.n - 1):
        for k, v in pool.graph(int(perm[i])).items():
            np.testing.assert_array_equal(taken.graph(i)[k], v)
    assert taken.texts("key") == [pool.texts("key")[j] for j in perm]


def _lengths(smiles: list[str]) -> tuple:
    """A model-input maker for `make_loader(inputs=...)` (module level: picklable into workers)."""
    import torch

    return (torch.tensor([len(s) for s in smiles]), torch.ones(len(smiles), 3, dtype=torch.bool))


def test_batches_from_a_worker_process_equal_in_process_ones(ds: Path) -> None:
    """A worker sends each batch as one buffer (+ layout); what arrives, and what `to` makes of it, is the
    in-process batch tensor for tensor, with the worker-made `inputs` of online teachers."""
    here = list(make_loader(ds, "train", 8, teachers=["fp"], inputs={"n": _lengths}))
    there = list(make_loader(ds, "train", 8, teachers=["fp"], num_workers=1, inputs={"n": _lengths}))
    assert len(here) == len(there) > 1
    for a, b in zip(here, there):
        assert b._flat is not None and a._flat is None  # one shared-memory buffer crossed
        b = b.to("cpu")
        assert b.keys == a.keys and b.smiles == a.smiles and b.graph.num_graphs == a.graph.num_graphs
        for name in ("x", "edge_index", "edge_attr", "batch", "ptr"):
            assert getattr(b.graph, name).equal(getattr(a.graph, name)), name
        assert b.masks["fp"].equal(a.masks["fp"]) and b.embeddings["fp"].equal(a.embeddings["fp"])
        assert b._flat is None  # unpacking the fingerprint bits left the buffer behind
        want = _lengths(a.smiles)
        assert len(b.inputs["n"]) == 2 and all(x.equal(y) for x, y in zip(b.inputs["n"], want))
        assert all(x.equal(y) for x, y in zip(a.inputs["n"], want))
    # A tensor added after arrival (an online teacher's mask) is moved too, not dropped with the buffer.
    import torch

    late = next(iter(make_loader(ds, "train", 8, teachers=["fp"], num_workers=1)))
    late.masks["online"] = torch.ones(len(late), dtype=torch.bool)
    assert late.to("cpu").masks["online"].all() and late._flat is None
    with pytest.raises(ValueError, match="smiles.txt"):
        make_loader(ds, "train", 8, inputs={"n": _lengths}, text=("key",))


def test_shuffle_random_across_shards_and_ranks_equal(ds: Path) -> None:
    total = dataset_manifest(ds)["splits"]["train"]["samples"]
    one = [k for b in make_loader(ds, "train", 4, shuffle=True, seed=1, batches_per_epoch=7) for k in b.keys]
    in_order = [s["key"] for s in iter_samples(ds, "train")]
    assert len(set(one)) == len(one) == 28 and one != in_order[:28]  # rows mixed across the pool
    epoch1 = [
        k
        for b in make_loader(ds, "train", 4, shuffle=True, seed=1, batches_per_epoch=7, epoch=1)
        for k in b.keys
    ]
    assert epoch1 != one
    for world, workers in ((2, 0), (3, 2), (5, 0)):
        counts = [
            len(
                list(make_loader(ds, "train", 2, rank=r, world_size=world, shuffle=True, num_workers=workers))
            )
            for r in range(world)
        ]
        assert counts == [total // (2 * world)] * world, (world, workers, counts)


def test_modality_batches_group_rows_by_presence_and_read_each_once(ds: Path) -> None:
    """A quarter of the rows lack the "fp" modality. Grouped, nearly every batch is all-with or all-without
    (one mixed batch at most per pool of shards); ungrouped, most batches mix. Every row is read once."""

    def batches(grouped: bool, seed: int = 3) -> list:
        kw = dict(teachers=["fp"], shuffle=True, seed=seed, modality_batches=grouped)
        return list(make_loader(ds, "train", 4, **kw))

    def mixed(bs: list) -> int:
        return sum(0 < int(b.masks["fp"].sum()) < len(b) for b in bs)

    grouped, plain = batches(True), batches(False)
    keys = [k for b in grouped for k in b.keys]
    assert sorted(keys) == sorted(k for b in plain for k in b.keys) and len(set(keys)) == len(keys)
    pools = -(-len(keys) // (4 * 7))  # buffer_shards=4 shards of 7 rows
    assert mixed(grouped) <= pools < mixed(plain)
    assert [b.keys for b in batches(True)] == [b.keys for b in grouped]  # deterministic
    assert [b.keys for b in batches(True, seed=4)] != [b.keys for b in grouped]
    # batch order is shuffled: the batches without the modality are not all at the end of a pool
    empty = [i for i, b in enumerate(grouped) if int(b.masks["fp"].sum()) == 0]
    assert empty and empty != list(range(len(grouped) - len(empty), len(grouped)))
    # a modality every molecule has leaves nothing to group: the same batches as without the option
    _cache(ds, "dense", 16, sparse=False)
    kw = dict(teachers=["dense"], shuffle=True, seed=3)
    dense = [[b.keys for b in make_loader(ds, "train", 4, **kw, modality_batches=g)] for g in (False, True)]
    assert dense[0] == dense[1]


def test_taught_only_batches_just_the_rows_a_teacher_has_an_embedding_for(ds: Path) -> None:
    """A quarter of the rows lack "fp": with taught_only, no batch holds one, every other row is read once in
    a pass, and each of 2 ranks gets the batches the taught rows fill; without it, the batches mix them in."""
    from acml_dist.data.shards import count_samples, count_taught

    taught_keys = {
        k for b in make_loader(ds, "train", 4, teachers=["fp"]) for k, m in zip(b.keys, b.masks["fp"]) if m
    }
    assert count_taught(ds, "train", ["fp"]) == len(taught_keys) < count_samples(ds, "train")
    assert count_taught(ds, "train", []) == count_samples(ds, "train")
    one = list(make_loader(ds, "train", 4, teachers=["fp"], shuffle=True, seed=3, taught_only=True))
    assert all(bool(b.masks["fp"].all()) for b in one)
    assert sorted(k for b in one for k in b.keys) == sorted(taught_keys)
    for rank in (0, 1):
        kw = dict(teachers=["fp"], shuffle=True, seed=3, rank=rank, world_size=2)
        only = list(make_loader(ds, "train", 4, **kw, taught_only=True))
        assert len(only) == len(taught_keys) // 8 and all(bool(b.masks["fp"].all()) for b in only)
        assert any(not bool(b.masks["fp"].all()) for b in make_loader(ds, "train", 4, **kw))


# five heavy-atom compositions, six molecules each (isomers, or the same heavy atoms with fewer hydrogens)
ISOMER_SETS = [
    ["CCCCO", "CCOCC", "CC(C)CO", "CC(O)CC", "COCCC", "CC(C)(C)O"],
    ["CCCCCC", "CC(C)CCC", "CCC(C)CC", "CC(C)C(C)C", "CC(C)(C)CC", "C1CCCCC1"],
    ["CCCCCN", "CCCNCC", "CC(C)CCN", "C1CCNCC1", "CCN(C)CC", "CC(N)CCC"],
    ["c1ccccc1O", "OC1CCCC=C1", "OC1=CCCC=C1", "C1=CC(=O)CCC1", "O=C1CCCCC1", "CC(=O)CCC=C"],
    ["CCCCl", "CC(Cl)=C", "CC(C)Cl", "C1CC1Cl", "C=CCCl", "CC=CCl"],
]


def _composition(smiles: str) -> str:
    """Heavy-atom composition, e.g. "C6O" for phenol and cyclohexanone alike."""
    from collections import Counter

    from rdkit import Chem

    counts = Counter(atom.GetSymbol() for atom in Chem.MolFromSmiles(smiles).GetAtoms())
    return "".join(f"{el}{n}" for el, n in sorted(counts.items()))


def test_isomer_batches_put_each_composition_in_adjacent_batches(tmp_path: Path) -> None:
    """One pool holds the whole split. With isomer batches each heavy-atom composition is contiguous before
    the batch order is shuffled, so a group of 6 spans at most 3 batches of 4 (two if aligned); shuffled
    rows spread most groups over 4-6 batches. Within the rows that have the sparse "fp" modality, the
    same holds for each (modality, composition) block. Every row is read once."""
    rng = np.random.default_rng(0)
    smiles = [s for group in ISOMER_SETS for s in group]
    smiles = [smiles[i] for i in rng.permutation(len(smiles))]
    root = _dataset(tmp_path / "iso", smiles, per_shard=6)
    kw: dict = dict(teachers=["fp"], shuffle=True, seed=1, buffer_shards=10)

    def spans(batches: list, by_modality: bool) -> list[int]:
        where: dict[tuple, set[int]] = {}
        for i, b in enumerate(batches):
            for smi, has in zip(b.smiles, b.masks["fp"].tolist()):
                where.setdefault((_composition(smi), bool(has) and by_modality), set()).add(i)
        return sorted(len(v) for v in where.values())

    plain = list(make_loader(root, "train", 4, **kw, modality_batches=False))
    grouped = list(make_loader(root, "train", 4, **kw, modality_batches=False, isomer_batches=True))
    both = list(make_loader(root, "train", 4, **kw, modality_batches=True, isomer_batches=True))
    for bs in (grouped, both):
        keys = [k for b in bs for k in b.keys]
        assert sorted(keys) == sorted(k for b in plain for k in b.keys) and len(set(keys)) == len(keys)
    assert max(spans(grouped, False)) <= 3 < max(spans(plain, False))
    assert max(spans(both, True)) <= 3  # blocks of <= 6 rows (a composition's rows with / without fp)
    assert sum(0 < int(b.masks["fp"].sum()) < len(b) for b in both) <= 2  # still grouped by modality
    again = list(make_loader(root, "train", 4, **kw, modality_batches=False, isomer_batches=True))
    assert [b.keys for b in again] == [b.keys for b in grouped]


def _expect(ds: Path, match: str, teachers: tuple[str, ...] = ("fp",), exc: type = ShardError) -> None:
    with pytest.raises(exc, match=match):
        list(make_loader(ds, "train", 4, teachers=teachers))


def test_torn_flipped_missing_foreign_shards_are_named(ds: Path, tmp_path: Path) -> None:
    first = ds / "train" / "shard-000000.npz"
    good = first.read_bytes()
    first.write_bytes(good[:-100])  # truncated
    _expect(ds, r"train/shard-000000.npz: sha256 .* the file was changed, truncated")
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    first.write_bytes(bytes(flipped))
    _expect(ds, r"train/shard-000000.npz: sha256")
    first.unlink()
    _expect(ds, r"train/shard-000000.npz: missing")
    other = _dataset(tmp_path / "other", DEMO_SMILES[::-1])
    shutil.copy(other / "train" / "shard-000000.npz", first)  # foreign: another dataset's shard
    _expect(ds, r"train/shard-000000.npz: sha256")
    first.write_bytes(good)
    assert len(list(make_loader(ds, "train", 4, teachers=["fp"]))) == 8


def test_torn_mismatched_foreign_caches_are_named(ds: Path, tmp_path: Path) -> None:
    cache = cache_dir(ds, "fp")
    first = cache / "train" / "shard-000000.npz"
    good = first.read_bytes()
    first.write_bytes(good[: len(good) // 2])
    _expect(ds, r"embeddings/fp/train/shard-000000.npz: sha256")
    shutil.copy(cache / "train" / "shard-000001.npz", first)  # another shard's rows under this name
    _expect(ds, r"embeddings/fp/train/shard-000000.npz: sha256")
    first.write_bytes(good)
    manifest = json.loads((cache / "manifest.json").read_text())
    entries = manifest["splits"]["train"]["shards"]
    entries[0], entries[1] = {**entries[1], "name": entries[0]["name"]}, entries[1]
    write_json(cache / "manifest.json", manifest)  # the manifest and the file agree, the graph shard not
    _expect(ds, r"shard-000000.npz was built from another graph shard", exc=ShardMismatch)
    other = _dataset(tmp_path / "other", DEMO_SMILES[::-1])
    shutil.rmtree(cache)
    shutil.copytree(cache_dir(other, "fp"), cache)  # a cache of another dataset
    with pytest.raises(ShardMismatch, match="belongs to another dataset"):
        make_loader(ds, "train", 4, teachers=["fp"])


def test_lenient_policy_skips_and_counts(ds: Path) -> None:
    (ds / "train" / "shard-000001.npz").write_bytes(b"torn")
    loader = make_loader(ds, "train", 4, teachers=["fp"], on_bad_shard="skip")
    keys = [k for b in loader for k in b.keys]
    assert len(keys) == 30 - 7 and loader.skipped == ["train/shard-000001.npz"]
    with pytest.raises(ValueError, match="on_bad_shard"):
        make_loader(ds, "train", 4, on_bad_shard="ignore")


def test_skips_in_worker_processes_reach_the_loader_once(ds: Path) -> None:
    """Two worker processes that live across epochs: a shard one of them skips is named in the owning
    process's `loader.skipped`, once however many epochs met it (issue 16: workers used to only log it)."""
    (ds / "train" / "shard-000002.npz").write_bytes(b"torn")
    loader = make_loader(ds, "train", 4, teachers=["fp"], on_bad_shard="skip", num_workers=2,
                         batches_per_epoch=5, shuffle=True)  # fmt: skip
    for epoch in range(3):
        loader.set_epoch(epoch)
        assert len(list(loader)) == 5
    assert loader.skipped == ["train/shard-000002.npz"]
    assert loader.shard_names == [f"train/shard-{i:06d}.npz" for i in range(5)]


def test_old_schema_refused_with_rebuild_hint(ds: Path) -> None:
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest.pop("format")
    manifest["schema_version"] = 1
    write_json(ds / "manifest.json", manifest)
    with pytest.raises(SchemaError, match=r"schema version 1 .*acml featurize .*overwrite=true") as info:
        make_loader(ds, "train", 4)
    assert "\n" not in str(info.value)


BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("ray", "mlflow", "rdkit"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
"""


def test_loader_model_loss_step_without_ray_mlflow_rdkit(ds: Path) -> None:
    """A GPU node may have torch and PyG only: shards -> batch -> model -> loss -> backward runs there."""
    import subprocess
    import sys

    code = (
        BLOCK
        + f"""
import torch
import acml_dist.train, acml_dist.training
from acml_dist.data.loader import make_loader
from acml_dist.losses import ContrastiveLoss
from acml_dist.models import ACMLModel
batch = next(iter(make_loader({str(ds)!r}, "train", 8, teachers=["fp"], shuffle=True, num_workers=1)))
model = ACMLModel(dict(num_layers=2, emb_dim=16, proj_dim=8), {{"fp": 16}})
out = model(batch.graph, {{n: e.float() for n, e in batch.embeddings.items()}})
g, t, s = out["fp"]
ContrastiveLoss("clip", gather=False)(g, t, batch.masks["fp"], s).backward()
assert not [m for m in sys.modules if m.split(".")[0] in ("ray", "mlflow", "rdkit")]
print("step ok", len(batch))
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "step ok 8" in proc.stdout, proc.stderr[-2000:]


def test_cli_refuses_old_schema_in_one_line(ds: Path) -> None:
    import subprocess
    import sys

    manifest = json.loads((ds / "manifest.json").read_text())
    write_json(ds / "manifest.json", {**manifest, "schema_version": 1, "format": None})
    out = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "embed", f"shards={ds}", "teachers=fingerprint"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [x for x in out.stderr.splitlines() if "schema version 1" in x]
    assert len(lines) == 1 and "overwrite=true" in lines[0] and "Traceback" not in out.stderr
