"""`acml embed` on real Ray: actor pool, aligned manifest, resume after a SIGKILL, overwrite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import kill_group, kill_ray_worker, write_dataset

from acml_dist.config import load_config
from acml_dist.data.datasets import moses_smiles
from acml_dist.data.loader import iter_samples
from acml_dist.data.shards import cache_dir, dataset_manifest, read_json, sha256_file
from acml_dist.teachers import load_teacher
from acml_dist.teachers.cache import embed_dataset
from acml_dist.teachers.sanity import teacher_sanity

pytestmark = pytest.mark.integration


def _cfg(root: Path, *extra: str):
    return load_config("embed", [f"shards={root}", *extra])


def test_embed_dataset_two_teachers_two_actors(ray_local, tmp_path):
    root = tmp_path / "ds"
    write_dataset(
        root, {"train": moses_smiles(48), "test": moses_smiles(16, offset=48)}, samples_per_shard=16
    )
    summary = embed_dataset(_cfg(root, "teachers=smiles_fp", "cluster.embed_actors=2"))
    assert set(summary["teachers"]) == {"rxnfp", "morgan"}
    graphs = dataset_manifest(root)["splits"]
    for name, dim, encoding in (("rxnfp", 256, "float16"), ("morgan", 2048, "bits")):
        m = read_json(cache_dir(root, name) / "manifest.json")
        assert m == summary["teachers"][name]
        assert (m["teacher"], m["dim"], m["encoding"]) == (name, dim, encoding)
        assert {s: v["samples"] for s, v in m["splits"].items()} == {"train": 48, "test": 16}
        teacher = load_teacher(name, m["config"])
        assert m["weights_hash"] == teacher.weights_hash()
        for split, info in graphs.items():
            listed = m["splits"][split]["shards"]
            assert [e["name"] for e in listed] == [e["name"] for e in info["shards"]]
            for entry, graph in zip(listed, info["shards"]):
                assert sha256_file(cache_dir(root, name) / entry["name"]) == entry["sha256"]
                assert entry["graph_sha256"] == graph["sha256"]
            samples = list(iter_samples(root, split, [name]))  # verified join: same keys, same order
            assert all(s["embeddings"][name] is not None for s in samples)
            np.testing.assert_allclose(
                np.stack([s["embeddings"][name] for s in samples]),
                teacher.encode_samples(samples).numpy(),
                rtol=2e-3,
                atol=2e-3,
            )
    # The training reader joins the cache: same embeddings as the teachers compute online, and it refuses
    # a cache made by other weights.
    from acml_dist.data.loader import ShardMismatch, make_loader

    hashes = {t: m["weights_hash"] for t, m in summary["teachers"].items()}
    batches = list(make_loader(root, "test", 8, teachers=("rxnfp", "morgan"), teacher_hashes=hashes))
    assert sum(len(b.keys) for b in batches) == 16
    rx = load_teacher("rxnfp", summary["teachers"]["rxnfp"]["config"])
    mg = load_teacher("morgan", summary["teachers"]["morgan"]["config"])
    for b in batches:
        assert b.masks["rxnfp"].all() and b.embeddings["morgan"].shape == (len(b.keys), 2048)
        online = rx.encode_smiles(b.smiles).numpy()
        np.testing.assert_allclose(b.embeddings["rxnfp"].float().numpy(), online, rtol=2e-3, atol=2e-3)
        np.testing.assert_array_equal(
            b.embeddings["morgan"].float().numpy(), mg.encode_smiles(b.smiles).numpy()
        )
    # Online in training: rxnfp's tokens made in a loader worker, embedded where the batch lives, equal the
    # teacher's own route (sorted-by-length chunks tokenised in this process).
    from acml_dist.training.online import fill_online, online_inputs

    worker_made = make_loader(root, "test", 8, num_workers=1, inputs=online_inputs({"rxnfp": rx}))
    for b in worker_made:
        assert set(b.inputs) == {"rxnfp"}
        fill_online(b.to("cpu"), {"rxnfp": rx})
        assert b.masks["rxnfp"].all()
        np.testing.assert_allclose(
            b.embeddings["rxnfp"].float().numpy(), rx.encode_smiles(b.smiles).numpy(), rtol=2e-3, atol=2e-3
        )
    with pytest.raises(ShardMismatch, match="was built with weights"):
        next(iter(make_loader(root, "test", 8, teachers=("rxnfp",), teacher_hashes={"rxnfp": "other"})))
    # Rerun: nothing to do, files untouched; overwrite: everything redone.
    stamp = {p: p.stat().st_mtime_ns for p in cache_dir(root, "rxnfp").rglob("shard-*.npz")}
    again = embed_dataset(_cfg(root, "teachers=rxnfp"))
    assert again["teachers"]["rxnfp"]["embedded_now"] == 0
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    redo = embed_dataset(_cfg(root, "teachers=fingerprint", "overwrite=true"))
    assert redo["teachers"]["morgan"]["embedded_now"] == 64
    # Without Ray (cluster.address=processes: a GPU node that has none): the same cache bytes.
    twin = tmp_path / "twin"
    shutil.copytree(root, twin)
    shutil.rmtree(cache_dir(twin, "morgan"))
    local = embed_dataset(
        _cfg(twin, "teachers=fingerprint", "cluster.address=processes", "cluster.embed_actors=2")
    )["teachers"]["morgan"]
    assert local["embedded_now"] == 64 and local["actors"] == 2
    for split, info in redo["teachers"]["morgan"]["splits"].items():
        want = [e["sha256"] for e in info["shards"]]
        assert [e["sha256"] for e in local["splits"][split]["shards"]] == want
    # The sanity command on this tiny cache: neighbours in rxnfp space are more similar than random pairs.
    report = teacher_sanity(root, "rxnfp", "train", n=48, k=5)
    assert report["knn_tanimoto"] > report["random_tanimoto"]


def test_killed_embed_resumes_to_the_same_cache(ray_local, tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, {"train": moses_smiles(80)}, samples_per_shard=8)  # 10 shards
    env = {**os.environ, "ACML_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "acml_dist.cli", "embed", f"shards={root}", "teachers=rxnfp"]
    cmd += ["cluster.num_cpus=1", "cluster.object_store_memory=100000000"]
    proc = subprocess.Popen(
        cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    out = cache_dir(root, "rxnfp") / "train"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(out.glob(".shard-*.done.json")):
        time.sleep(0.02)
    kill_group(proc)  # the driver and the Ray processes it started
    # The actor sits in its own process group and dies with its raylet, possibly after finishing the
    # shard it was on: that is a legitimate completed shard. Let it go before taking the snapshot.
    time.sleep(3)
    done = {p.name: p.read_text() for p in out.glob(".shard-*.done.json")}
    assert 1 <= len(done) < 10, f"expected a partial run; done={sorted(done)}"
    assert not (cache_dir(root, "rxnfp") / "manifest.json").exists()
    resumed = embed_dataset(_cfg(root, "teachers=rxnfp"))["teachers"]["rxnfp"]
    assert resumed["embedded_now"] == 80 - 8 * len(done)
    assert all((out / name).read_text() == text for name, text in done.items())  # finished shards kept
    assert not list(out.glob(".*.tmp*"))  # no partial files left behind
    # Same cache as an uninterrupted run: every shard holds exactly its graph shard's keys, in order, with
    # the teacher's embeddings (float16 tolerance), and the manifest lists every shard.
    teacher = load_teacher("rxnfp", resumed["config"])
    names = [e["name"] for e in resumed["splits"]["train"]["shards"]]
    assert names == [e["name"] for e in dataset_manifest(root)["splits"]["train"]["shards"]]
    samples = list(iter_samples(root, "train", ["rxnfp"]))  # every shard verified against its graph shard
    assert len(samples) == 80 and all(s["embeddings"]["rxnfp"] is not None for s in samples)
    cached = np.stack([s["embeddings"]["rxnfp"] for s in samples])
    np.testing.assert_allclose(cached, teacher.encode_samples(samples).numpy(), rtol=2e-3, atol=2e-3)


def test_embed_actor_sigkilled_midway_gives_the_same_cache(ray_local, tmp_path):
    """SIGKILL of the Ray actor process embedding a shard: Ray restarts the actor and retries the shard, the
    run completes, and every cache shard equals an undisturbed run's (byte for byte)."""
    import threading

    smiles = moses_smiles(96)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    for root in (killed_root, clean_root):
        write_dataset(root, {"train": smiles}, samples_per_shard=8)  # 12 shards
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = embed_dataset(_cfg(killed_root, "teachers=rxnfp", "cluster.num_cpus=1"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    out, killed, deadline = cache_dir(killed_root, "rxnfp") / "train", None, time.time() + 240
    while killed is None and thread.is_alive() and time.time() < deadline:
        if len(list(out.glob(".shard-*.done.json"))) >= 2:
            killed = kill_ray_worker("ray::EmbedWorker")  # the actor, in the middle of the next shard
        time.sleep(0.02)
    thread.join(600)
    assert killed is not None, "no embedding actor was caught between shards"
    assert "error" not in result, result.get("error")
    embed_dataset(_cfg(clean_root, "teachers=rxnfp", "cluster.num_cpus=1"))

    def digests(root: Path) -> dict[str, str]:
        entries = read_json(cache_dir(root, "rxnfp") / "manifest.json")["splits"]["train"]["shards"]
        return {e["name"]: e["sha256"] for e in entries}

    assert len(digests(killed_root)) == 12 and digests(killed_root) == digests(clean_root)
    assert not list(out.glob(".*.tmp*"))
