"""Featurisation in a local process pool (`cluster.address=processes`, a node without Ray) writes the same
shard bytes and counts as on Ray, and runs where `import ray` fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from acml_dist.config import load_config
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.shards import read_manifest, sha256_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARGS = ["data=nci5k", "data.limit=600", "data.chunk_size=100", "data.samples_per_shard=50"]
NO_RAY = "import sys; sys.modules['ray'] = None\n"  # any `import ray` now raises ImportError


def digests(root: Path) -> dict[str, str]:
    manifest = read_manifest(root)
    return {
        e["name"]: sha256_file(root / e["name"]) for s in manifest["splits"].values() for e in s["shards"]
    }


def test_process_pool_equals_ray_without_ray_installed(ray_local, tmp_path: Path) -> None:
    on_ray = featurize_corpus(load_config("featurize", [*ARGS, f"output={tmp_path / 'ray'}"]))
    args = [*ARGS, f"output={tmp_path / 'pool'}", "cluster.address=processes", "cluster.featurize_workers=2"]
    code = NO_RAY + (
        "from acml_dist.config import load_config\n"
        "from acml_dist.data.featurize import featurize_corpus\n"
        f"featurize_corpus(load_config('featurize', {args!r}))\n"
    )
    env = {**os.environ, "ACML_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    pooled = read_manifest(tmp_path / "pool")
    assert pooled["counts"] == on_ray["counts"]
    assert on_ray["counts"]["written"] > 0
    assert digests(tmp_path / "pool") == digests(tmp_path / "ray")
    assert (tmp_path / "pool" / "rejects.jsonl").read_bytes() == (
        tmp_path / "ray" / "rejects.jsonl"
    ).read_bytes()
