"""Cache shards without Ray: aligned writing, verification, the join the training reader uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acml_dist.config.teachers import TeacherConfig
from acml_dist.teachers import load_teacher
from acml_dist.teachers.cache import embed_shard, verify_done
from acml_dist.teachers.shards import (
    CacheMismatchError,
    cache_dir,
    cache_manifest,
    graph_shards,
    iter_cache_shard,
    iter_graph_shard,
    join_cache,
    write_json_atomic,
)
from acml_dist.teachers.testing import DEMO_SMILES, write_dataset

pytestmark = pytest.mark.unit


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, {"train": DEMO_SMILES[:12], "test": DEMO_SMILES[12:18]}, samples_per_shard=5)
    return root


def _embed_all(teacher, root):
    for split, entries in graph_shards(root).items():
        for e in entries:
            out = cache_dir(root, teacher.name) / split / e["name"]
            embed_shard(teacher, Path(e["path"]), out, e["sha256"])


def test_cached_equals_online_within_float16(dataset):
    rx = load_teacher("rxnfp", TeacherConfig(kind="smiles_lm", batch_size=4))
    _embed_all(rx, dataset)
    for split, entries in graph_shards(dataset).items():
        for e in entries:
            samples = list(iter_graph_shard(e["path"]))
            cached, mask = join_cache(
                samples, cache_dir(dataset, "rxnfp") / split / e["name"], "rxnfp", rx.dim
            )
            online = rx.encode_samples(samples).numpy()
            assert mask.all() and cached.dtype == np.float32
            # float16 keeps ~3 significant digits
            np.testing.assert_allclose(cached, online, rtol=2e-3, atol=2e-3)
            assert [k for k, _ in iter_cache_shard(cache_dir(dataset, "rxnfp") / split / e["name"])] == [
                s["key"] for s in samples
            ]


def test_missing_modality_is_recorded_not_dropped(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, {"train": DEMO_SMILES[:4]}, samples_per_shard=4)
    nmr = load_teacher("c13", TeacherConfig(kind="cress_nmr13c", params={"random_init": True}))
    e = graph_shards(root)["train"][0]
    out = cache_dir(root, "c13") / "train" / e["name"]
    rec = embed_shard(nmr, Path(e["path"]), out, e["sha256"])
    assert rec["samples"] == 4 and rec["missing"] == 4
    embs, mask = join_cache(list(iter_graph_shard(e["path"])), out, "c13", 768)
    assert not mask.any() and not embs.any()


def test_join_and_verify_detect_mismatches(dataset):
    fp = load_teacher("morgan", TeacherConfig(kind="fingerprint", params={"n_bits": 256}))
    _embed_all(fp, dataset)
    entries = graph_shards(dataset)["train"]
    first, second = (list(iter_graph_shard(e["path"])) for e in entries[:2])
    out0 = cache_dir(dataset, "morgan") / "train" / entries[0]["name"]
    embs, mask = join_cache(first, out0, "morgan", 256)
    np.testing.assert_array_equal(embs, fp.encode_samples(first).numpy())  # bits are exact in float16
    with pytest.raises(CacheMismatchError, match="has key"):
        join_cache(second, out0, "morgan", 256)  # a cache shard joined with the wrong graph shard
    with pytest.raises(CacheMismatchError, match="has 5 samples, graph shard has 6"):
        join_cache(first + [first[0]], out0, "morgan", 256)  # the graph shard has more samples
    # Done records verify the output's sha256, the graph shard's sha256 and the teacher's hash.
    assert verify_done(out0, entries[0]["sha256"], fp.weights_hash()) is not None
    assert verify_done(out0, entries[0]["sha256"], "other-weights") is None
    assert verify_done(out0, "other-graph", fp.weights_hash()) is None
    with open(out0, "ab") as f:
        f.write(b"\0" * 512)
    assert verify_done(out0, entries[0]["sha256"], fp.weights_hash()) is None


def test_cache_manifest_checks_teacher_hash(dataset):
    with pytest.raises(CacheMismatchError, match="no embedding cache"):
        cache_manifest(dataset, "rxnfp")
    d = cache_dir(dataset, "rxnfp")
    d.mkdir(parents=True)
    write_json_atomic(d / "manifest.json", {"teacher": "rxnfp", "weights_hash": "aaa"})
    assert cache_manifest(dataset, "rxnfp", "aaa")["teacher"] == "rxnfp"
    with pytest.raises(CacheMismatchError, match="made with weights aaa"):
        cache_manifest(dataset, "rxnfp", "bbb")
