"""cluster/pretrain.py as a user runs it without a head (embedded local Ray, file-based MLflow): training
through the `deepspeed` launcher option, resume by verification, and a failing stage named with exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pretrain(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "cluster/pretrain.py", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_deepspeed_launcher_trains_two_ranks_and_rerun_skips(tmp_path):
    args = [
        "name=small",
        "data=nci5k",
        "data.limit=200",
        "data.samples_per_shard=50",
        "teachers=fingerprint",
        "model=gin_small",
        "trainer.epochs=1",
        "trainer.micro_batch=16",
        "stages=[featurize,embed,train]",
        "cluster.train_launcher=deepspeed",
        "cluster.num_cpus=2",
        f"shards_root={tmp_path}/shards",
        f"runs_root={tmp_path}/runs",
    ]
    first = pretrain(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    result = json.loads((tmp_path / "runs" / "small" / "train_result.json").read_text())
    assert result["world_size"] == 2 and result["global_batch"] == 32
    assert Path(result["model_dir"]).is_dir()

    again = pretrain(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("(verified, skipped)") == 3  # featurize, embed and train all verified


def test_failing_stage_is_named_and_exits_1(tmp_path):
    out = pretrain(
        "name=bad",
        "data=file",
        f"input={tmp_path}/does-not-exist.csv",
        "stages=[featurize]",
        f"shards_root={tmp_path}/shards",
        f"runs_root={tmp_path}/runs",
    )
    assert out.returncode == 1
    assert "stage 'featurize' failed" in out.stderr
