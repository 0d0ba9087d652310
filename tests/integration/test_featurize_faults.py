"""Faults injected for real into featurisation (real local Ray), each followed by a re-run that must give
what an undisturbed run gives: the same manifest counts and the same sha256 for every shard the manifest
lists. Written against the public stage (`featurize_corpus`, the CLI script) and the manifest only, not the
shard layout. test_featurize_kill.py kills the driver during the chunk phase; here it dies while shards are
being written, and the disk fills up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import kill_group

from acml_dist.config import load_config
from acml_dist.data.diskfull import DiskFullError
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.shards import read_manifest, sha256_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "data=nci5k",
    "data.limit=1200",
    "data.chunk_size=100",
    "data.samples_per_shard=20",
    "data.split=random",
]


def shard_digests(root: Path) -> dict[str, str]:
    """sha256 of every shard the manifest lists, read from disk and checked against the manifest."""
    manifest = read_manifest(root)
    assert manifest is not None and manifest["complete"]
    found = {}
    for split in manifest["splits"].values():
        for entry in split["shards"]:
            found[entry["name"]] = sha256_file(root / entry["name"])
            assert found[entry["name"]] == entry["sha256"], entry["name"]
    return found


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp-*") if p.is_file()]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, ray_local) -> tuple[dict, dict[str, str], int]:
    """An undisturbed run: its manifest, its shard digests, and the bytes its output holds."""
    out = tmp_path_factory.mktemp("faults") / "clean"
    manifest = featurize_corpus(load_config("featurize", [*ARGS, f"output={out}"]))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return manifest, shard_digests(out), size


def _mount_tmpfs(path: Path, size: int, remount: bool = False) -> None:
    opts = f"{'remount,' if remount else ''}size={size}"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        if remount:
            raise RuntimeError(f"remount of {path} failed: {message}")
        pytest.skip(f"a small disk needs `mount -t tmpfs` (root / CAP_SYS_ADMIN): {message}")


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A real file system of its own (tmpfs), which the test fills up, then grows."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    _mount_tmpfs(mnt, 1 << 20)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_fills_during_featurisation_then_resumes(clean_run, small_disk: Path) -> None:
    """The output's disk holds a third of what the run needs: one clear DiskFullError (no Ray traceback),
    no manifest marked complete; after the disk grows, the same command completes to the clean run's
    counts and shard digests, and no half-written file is left anywhere."""
    manifest, digests, size = clean_run
    _mount_tmpfs(small_disk, max(size // 3, 64 << 10), remount=True)
    out = small_disk / "out"
    cfg = load_config("featurize", [*ARGS, f"output={out}"])
    with pytest.raises(DiskFullError) as info:
        featurize_corpus(cfg)
    message = str(info.value)
    assert "no space left" in message and str(out) in message and "\n" not in message
    assert "ENOSPC" in message
    failed = read_manifest(out)
    assert failed is None or not failed["complete"]
    _mount_tmpfs(small_disk, 64 << 20, remount=True)  # the user frees space
    resumed = featurize_corpus(cfg)
    assert resumed["complete"] and resumed["counts"] == manifest["counts"]
    assert shard_digests(out) == digests
    assert partial_files(out) == []
    assert not (out / "_work").exists()


def test_driver_killed_while_writing_shards_then_resumes(clean_run, tmp_path: Path) -> None:
    """SIGKILL of the driver (and the Ray it started) once shards have started to appear: the re-run keeps
    what verifies, rewrites the rest, and equals the clean run."""
    manifest, digests, _ = clean_run
    out = tmp_path / "killed"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "ACML_LOG_LEVEL": "WARNING"}
    cmd = [
        sys.executable,
        str(REPO / "cluster" / "featurize.py"),
        *ARGS,
        f"output={out}",
        "cluster.num_cpus=1",
        "cluster.object_store_memory=100000000",
    ]
    log = tmp_path / "killed.log"
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )

    def shards_started() -> bool:
        # Any output file outside the work folder other than the manifest: the shard phase has begun.
        return out.is_dir() and any(
            p.is_file() and "_work" not in p.parts and p.name != "manifest.json" for p in out.rglob("*")
        )

    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None and not shards_started():
            time.sleep(0.05)
        assert proc.poll() is None, f"the job ended before it could be killed: {log.read_text()[-2000:]}"
        assert shards_started(), "no shard appeared in time"
    finally:
        kill_group(proc)
    killed = read_manifest(out)
    assert killed is None or not killed["complete"]
    resumed = featurize_corpus(load_config("featurize", [*ARGS, f"output={out}"]))
    assert resumed["complete"] and resumed["counts"] == manifest["counts"]
    assert shard_digests(out) == digests
    assert partial_files(out) == []
