"""A featurisation job killed midway (SIGKILL of the driver and its Ray) resumes to byte-identical shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import kill_group, kill_ray_worker

from acml_dist.config import load_config
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.shards import read_manifest, sha256_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "data=nci5k",
    "data.limit=1200",
    "data.chunk_size=100",
    "data.samples_per_shard=40",
    "data.split=random",
]


def digests(root: Path) -> dict[str, str]:
    manifest = read_manifest(root)
    return {
        e["name"]: sha256_file(root / e["name"]) for s in manifest["splits"].values() for e in s["shards"]
    }


def test_kill_midway_then_resume(ray_local, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "ACML_LOG_LEVEL": "WARNING"}
    cmd = [
        sys.executable,
        str(REPO / "cluster" / "featurize.py"),
        *ARGS,
        f"output={killed}",
        "cluster.num_cpus=1",
        "cluster.object_store_memory=100000000",
    ]
    log = tmp_path / "killed.log"
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    chunks = killed / "_work" / "chunks"
    deadline = time.time() + 240
    try:
        # Kill the driver, its Ray and its workers at once, after a few chunks and before the end.
        while time.time() < deadline and proc.poll() is None:
            if chunks.exists() and len(list(chunks.glob("*.done.json"))) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the job ended before it could be killed: {log.read_text()[-2000:]}"
    finally:
        kill_group(proc)
    manifest = read_manifest(killed)
    assert manifest is None or not manifest["complete"]
    resumed = featurize_corpus(load_config("featurize", [*ARGS, f"output={killed}"]))
    clean = tmp_path / "clean"
    featurize_corpus(load_config("featurize", [*ARGS, f"output={clean}"]))
    assert resumed["complete"] and resumed["counts"] == read_manifest(clean)["counts"]
    assert digests(killed) == digests(clean)
    assert (killed / "rejects.jsonl").read_bytes() == (clean / "rejects.jsonl").read_bytes()
    assert (
        json.loads((killed / "manifest.json").read_text())["config_hash"]
        == read_manifest(clean)["config_hash"]
    )


def test_ray_worker_sigkilled_midway_gives_the_same_shards(ray_local, tmp_path: Path) -> None:
    """SIGKILL of the Ray worker process running a chunk: Ray retries the task, the run completes, and the
    packed shards, manifest counts and rejects equal an undisturbed run's."""
    import threading

    out = tmp_path / "worker_killed"
    result: dict = {}

    def run() -> None:
        try:
            result["manifest"] = featurize_corpus(load_config("featurize", [*ARGS, f"output={out}"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    chunks, killed, deadline = out / "_work" / "chunks", None, time.time() + 240
    while killed is None and thread.is_alive() and time.time() < deadline:
        if chunks.exists() and len(list(chunks.glob("*.done.json"))) >= 2:
            killed = kill_ray_worker("ray::process_chunk")  # a worker in the middle of a chunk
        time.sleep(0.02)
    thread.join(300)
    assert killed is not None, "no featurisation worker was caught running a chunk"
    assert "error" not in result, result.get("error")
    clean = tmp_path / "clean"
    featurize_corpus(load_config("featurize", [*ARGS, f"output={clean}"]))
    assert result["manifest"]["complete"] and result["manifest"]["counts"] == read_manifest(clean)["counts"]
    assert digests(out) == digests(clean)
    assert (out / "rejects.jsonl").read_bytes() == (clean / "rejects.jsonl").read_bytes()
