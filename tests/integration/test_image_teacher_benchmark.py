"""benchmarks/image_teacher.py must run on a bare GPU node: here on CPU at tiny sizes with Ray and MLflow
unimportable. It ends with the JSON line; `--max-minutes` fits the epochs to the budget (a timing probe) or,
when nothing is left for training, stops before the first step and still evaluates; `--save` writes fp16
weights that the `image_cnn` teacher loads. No timing or R@1 value is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "image_teacher.py"
BLOCKED = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ray", "mlflow"}:
            raise ImportError(f"{name} is blocked (a bare GPU node)")
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
TINY = ["--epochs", "3", "--width", "4", "--resolution", "32", "--batch-size", "32", "--workers", "2",
        "--val", "100", "--device", "cpu"]  # fmt: skip


def _run(args: list[str]) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run([sys.executable, "-c", BLOCKED, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_image_teacher_benchmark_fits_the_budget_and_saves_a_loadable_fp16_teacher(tmp_path) -> None:
    from acml_dist.config.teachers import TeacherConfig
    from acml_dist.teachers.image_cnn import ImageCNNTeacher

    out = _run(["--molecules", "400", *TINY, "--max-minutes", "10", "--save", str(tmp_path / "cnn")])
    assert out["molecules"] > 300 and out["n_val"] == 100 and not out["stopped_early"]
    assert 1 <= out["epochs"] <= 3 and len(out["history"]) == out["epochs"]
    assert 0 <= out["untrained_val_r1"] <= 1 and 0 <= out["val_r1"] <= 1 and out["wall_s"] > out["train_s"]
    state = torch.load(tmp_path / "cnn" / "weights.pt")
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    conf = json.loads((tmp_path / "cnn" / "teacher_config.json").read_text())
    teacher = ImageCNNTeacher("image", TeacherConfig(kind=conf["kind"], modality="image", path=conf["path"],
                                                     params=conf["params"], device="cpu"))  # fmt: skip
    emb = teacher.forward(torch.rand(2, 1, 32, 32))
    assert emb.shape == (2, 256) and np.allclose(emb.norm(dim=-1).numpy(), 1, atol=1e-3)


def test_image_teacher_benchmark_out_of_budget_stops_before_training_and_still_reports() -> None:
    out = _run(["--molecules", "300", *TINY, "--max-minutes", "0.01", "--no-fit-epochs"])
    assert out["stopped_early"] and out["history"] == [] and out["images_per_s"] == 0
    assert out["val_r1"] == pytest.approx(out["untrained_val_r1"])  # no step taken: the twin's numbers
