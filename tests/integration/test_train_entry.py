"""The deepspeed entry point's argument handling, the DeepSpeed config built from Hydra, the NaN guard."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_entry_strips_local_rank_and_prints_config(capsys):
    from acml_dist.train import main

    assert (
        main(["--local_rank=1", "--local-rank", "0", "--cfg", "job", "trainer.micro_batch=7", "name=x"]) == 0
    )
    printed = capsys.readouterr().out
    assert "micro_batch: 7" in printed and "name: x" in printed and "local_rank" not in printed


def test_entry_reports_input_and_config_errors_in_one_line(tmp_path):
    """The script as the launcher runs it (own process: a failed run leaves no process group behind)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "ACML_DEBUG"}

    def entry(*overrides: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "acml_dist/train.py", *overrides]
        return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)

    missing = entry(f"shards_root={tmp_path}", "name=nothing_here")
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert "[rank 0] acml train: no embedding cache for teacher" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = entry("trainer.lr=abc")
    assert bad.returncode == 2 and "trainer.lr" in bad.stderr and "Traceback" not in bad.stderr


def test_ds_config_from_hydra():
    from acml_dist.config import load_config
    from acml_dist.training.ds_config import build_ds_config

    cfg = load_config("train", ["trainer=gpu", "trainer.grad_accum=4", "trainer.zero_stage=2"])
    ds = build_ds_config(cfg.trainer, 1000, on_gpu=True)
    assert ds["zero_optimization"]["stage"] == 2 and ds["gradient_accumulation_steps"] == 4
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["optimizer"]["type"] == "AdamW" and ds["optimizer"]["params"]["torch_adam"]
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 500
    cpu = build_ds_config(load_config("train", ["trainer.precision=auto"]).trainer, 10, on_gpu=False)
    assert not cpu["bf16"]["enabled"] and cpu["scheduler"]["params"]["warmup_num_steps"] == 9
    flat = build_ds_config(load_config("train", ["trainer.warmup_steps=0"]).trainer, 10, on_gpu=False)
    assert flat["scheduler"]["params"]["warmup_num_steps"] == 1  # DeepSpeed rejects 0
    assert flat["scheduler"]["params"]["warmup_min_ratio"] == 1.0  # ... so start at the full rate


def test_bad_step_guard_skips_then_stops():
    from acml_dist.training.checkpoint import BadStepGuard, TooManyBadSteps

    guard = BadStepGuard(limit=3)
    assert guard.check(False, 1) and guard.check(False, 2)
    assert not guard.check(True, 3) and guard.in_a_row == 0 and guard.total == 2
    guard.check(False, 4)
    guard.check(False, 5)
    with pytest.raises(TooManyBadSteps, match="3 consecutive non-finite losses at step 6"):
        guard.check(False, 6)
