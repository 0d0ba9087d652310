"""Nothing in a run folder is unpickled on resume: a checkpoint file replaced by a pickle whose loading would
run code (here: write a marker file) is refused with one line and exit 2, and the code never runs. Covered:
our per-rank RNG file, DeepSpeed's model-states file and its ZeRO optimiser-states file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, free_port, rank_env, tiny_train_overrides

pytestmark = pytest.mark.integration


class _Payload:
    """Unpickling this calls exec(): what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _train(overrides: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "acml_dist/train.py"), *overrides],
        env={**rank_env(0, 1, free_port()), "ACML_DEBUG": ""},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )


@pytest.fixture(scope="module")
def zero1_run(tiny_shards, tmp_path_factory):
    """A real ZeRO 1 run folder (checkpoint at step 2) to tamper with."""
    tmp = tmp_path_factory.mktemp("ckpt_safety")
    overrides = [
        *tiny_train_overrides(tiny_shards, tmp / "run", tmp),
        "trainer.zero_stage=1",
        "trainer.max_steps=2",
        "trainer.warmup_steps=1",
        "tracking.enabled=false",
    ]
    done = _train(overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp / "run" / "checkpoints" / "step00000002" / "rng_rank0.pt").exists()
    return tmp / "run", overrides


@pytest.mark.parametrize(
    "victim",
    ["rng_rank0.pt", "mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"],
)
def test_crafted_checkpoint_is_refused_and_runs_nothing(zero1_run, tmp_path, victim):
    import torch

    original, overrides = zero1_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    marker = tmp_path / "marker.txt"
    target = run / "checkpoints" / "step00000002" / victim
    assert target.exists()
    torch.save({"state": _Payload(marker), "tensor": torch.zeros(2)}, target)
    resumed = [o if not o.startswith("output=") else f"output={run}" for o in overrides]
    done = _train([*resumed, "trainer.max_steps=4"])
    assert not marker.exists(), "the crafted checkpoint ran its payload"
    assert done.returncode == 2, done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]
    assert "acml train:" in line and "refused to load" in line and "resume=false" in line, line
    assert victim in line and "it calls or builds exec" in line  # names the file and what it refused
    assert "Traceback" not in done.stderr
