"""Cache shards without Ray: aligned writing, bit packing, verification on read, the done records."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DEMO_SMILES, write_dataset

from acml_dist.config.teachers import TeacherConfig
from acml_dist.data.loader import iter_samples
from acml_dist.data.shards import (
    SchemaError,
    ShardMismatch,
    cache_dir,
    cache_manifest,
    dataset_manifest,
    load_cache_shard,
    load_graph_shard,
    shard_samples,
    unpack_rows,
    write_json,
)
from acml_dist.teachers import load_teacher
from acml_dist.teachers.cache import embed_shard, verify_done

pytestmark = pytest.mark.unit


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, {"train": DEMO_SMILES[:12], "test": DEMO_SMILES[12:18]}, samples_per_shard=5)
    return root


def _embed_all(teacher, root) -> dict:
    recs = {}
    for info in dataset_manifest(root)["splits"].values():
        for e in info["shards"]:
            rec = embed_shard(teacher, root, e, cache_dir(root, teacher.name) / e["name"])
            recs[e["name"]] = {**rec, "name": e["name"]}
    return recs


def _read(root, teacher, gentry, recs, dim):
    packed = load_graph_shard(root, gentry)
    matrix, present = load_cache_shard(root, teacher, recs[gentry["name"]], gentry, packed.blobs["key"])
    return packed, unpack_rows(matrix, dim), present


def test_cached_equals_online_within_float16(dataset):
    rx = load_teacher("rxnfp", TeacherConfig(kind="smiles_lm", batch_size=4))
    recs = _embed_all(rx, dataset)
    for info in dataset_manifest(dataset)["splits"].values():
        for e in info["shards"]:
            packed, cached, present = _read(dataset, "rxnfp", e, recs, rx.dim)
            online = rx.encode_samples(shard_samples(packed)).numpy()
            assert present.all() and cached.dtype == np.float16
            np.testing.assert_allclose(cached.astype(np.float32), online, rtol=2e-3, atol=2e-3)


def test_descriptor_cache_is_aligned_and_equals_online_within_float16(dataset):
    desc = load_teacher("desc", TeacherConfig(kind="descriptors", modality="descriptors"))
    recs = _embed_all(desc, dataset)
    for info in dataset_manifest(dataset)["splits"].values():
        for e in info["shards"]:
            packed, cached, present = _read(dataset, "desc", e, recs, desc.dim)
            online = desc.encode_samples(shard_samples(packed)).numpy()
            assert present.all() and cached.shape == online.shape and np.abs(online).max() > 1
            np.testing.assert_allclose(cached.astype(np.float32), online, rtol=1e-3, atol=1e-3)


def test_missing_modality_is_recorded_not_dropped(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, {"train": DEMO_SMILES[:4]}, samples_per_shard=4)
    nmr = load_teacher("c13", TeacherConfig(kind="cress_nmr13c", params={"random_init": True}))
    recs = _embed_all(nmr, root)
    e = dataset_manifest(root)["splits"]["train"]["shards"][0]
    assert recs[e["name"]]["samples"] == 4 and recs[e["name"]]["missing"] == 4
    _, embs, present = _read(root, "c13", e, recs, 768)
    assert not present.any() and not embs.any()


def test_fingerprints_bit_packed_exact_and_mismatches_named(dataset):
    fp = load_teacher("morgan", TeacherConfig(kind="fingerprint", params={"n_bits": 256}))
    recs = _embed_all(fp, dataset)
    first, second = dataset_manifest(dataset)["splits"]["train"]["shards"][:2]
    packed, bits, present = _read(dataset, "morgan", first, recs, 256)
    assert bits.dtype == np.uint8 and present.all()
    np.testing.assert_array_equal(bits, fp.encode_samples(shard_samples(packed)).numpy())  # exact
    out0 = cache_dir(dataset, "morgan") / first["name"]
    assert out0.stat().st_size < 5 * (256 // 8) + 1200  # 32 bytes per molecule + npz headers
    # A cache shard joined with another graph shard, or with other keys, is refused naming the file.
    with pytest.raises(ShardMismatch, match="another graph shard"):
        load_cache_shard(dataset, "morgan", recs[first["name"]], second, packed.blobs["key"])
    forged = {**recs[second["name"]], "graph_sha256": first["sha256"]}
    with pytest.raises(ShardMismatch, match="keys differ"):
        load_cache_shard(dataset, "morgan", forged, first, packed.blobs["key"])
    # Done records verify the output's sha256, the graph shard's sha256 and the teacher's hash.
    assert verify_done(out0, first["sha256"], fp.weights_hash()) is not None
    assert verify_done(out0, first["sha256"], "other-weights") is None
    assert verify_done(out0, "other-graph", fp.weights_hash()) is None
    with open(out0, "ab") as f:
        f.write(b"\0" * 512)
    assert verify_done(out0, first["sha256"], fp.weights_hash()) is None


def test_cache_manifest_checks_schema_dataset_and_teacher_hash(dataset):
    with pytest.raises(ShardMismatch, match="no embedding cache"):
        cache_manifest(dataset, "rxnfp")
    d = cache_dir(dataset, "rxnfp")
    d.mkdir(parents=True)
    write_json(d / "manifest.json", {"teacher": "rxnfp", "weights_hash": "aaa"})
    with pytest.raises(SchemaError, match="schema version 1.*overwrite=true"):
        cache_manifest(dataset, "rxnfp")
    good = {**dataset_manifest(dataset), "teacher": "rxnfp", "weights_hash": "aaa", "splits": {}}
    good["dataset_hash"] = good.pop("config_hash")
    write_json(d / "manifest.json", good)
    assert cache_manifest(dataset, "rxnfp", "aaa")["teacher"] == "rxnfp"
    with pytest.raises(ShardMismatch, match="built with weights aaa"):
        cache_manifest(dataset, "rxnfp", "bbb")
    write_json(d / "manifest.json", {**good, "dataset_hash": "other"})
    with pytest.raises(ShardMismatch, match="another dataset"):
        cache_manifest(dataset, "rxnfp")
    assert len(list(iter_samples(dataset, "test"))) == 6
