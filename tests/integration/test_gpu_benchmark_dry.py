"""benchmarks/gpu.py must not rot: its --dry mode runs every measurement on CPU at tiny sizes, and the
--prepare / --data split runs the measuring side with Ray, MLflow, RDKit, Hydra and OmegaConf unimportable
(as on a bare GPU node). No timing is asserted: only that it ends with the JSON line and its keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu.py"
KEYS = {"benchmark", "mode", "device", "bare_gin_mol_s", "acml_step_mol_s", "loader_mol_s",
        "end_to_end_mol_s", "end_to_end_vs_step", "end_to_end_large_vs_step", "teacher_rxnfp", "deepspeed",
        "wall_s"}  # fmt: skip
# Runs the script with these top-level packages made unimportable (a GPU node without them).
BLOCKED = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"rdkit", "ray", "mlflow", "hydra", "omegaconf"}:
            raise ImportError(f"{name} is blocked (a bare GPU node)")
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(out: dict) -> None:
    assert KEYS <= out.keys(), KEYS - out.keys()
    assert out["mode"] == "dry" and out["benchmark"] == "gpu"
    assert set(out["bare_gin_mol_s"]) == set(out["acml_step_mol_s"]) == {"32", "64"}
    assert set(out["loader_mol_s"]) == {"0", "1"}
    assert all(v > 0 for v in [*out["bare_gin_mol_s"].values(), *out["loader_mol_s"].values()])
    for mode in ("eager", "compiled"):
        run = out["deepspeed"][mode]
        assert run["status"] == "ok", run
        assert run["steps"] == 4 and run["mol_s"] > 0 and run["final_loss"] == run["final_loss"]  # not NaN
    assert out["teacher_rxnfp"]["status"] in ("ok", "skipped")
    if out["teacher_rxnfp"]["status"] == "skipped":
        assert out["teacher_rxnfp"]["reason"]


def test_gpu_benchmark_dry_runs_every_measurement():
    out = _last_json(_run([sys.executable, str(SCRIPT), "--dry"]))
    _check(out)
    assert out["prepared"]["molecules"] > 250
    assert out["teacher_rxnfp"]["status"] == "ok", out["teacher_rxnfp"]  # rxnfp is a dev dependency


def test_gpu_benchmark_measures_prepared_data_without_ray_mlflow_rdkit_hydra(tmp_path):
    data = tmp_path / "gpu_data"
    prep = _last_json(_run([sys.executable, str(SCRIPT), "--prepare", str(data), "--molecules", "300"]))
    assert prep["molecules"] > 250 and (data / "manifest.json").exists() and not (data / "old").exists()
    out = _last_json(_run([sys.executable, "-c", BLOCKED, str(SCRIPT), "--dry", "--data", str(data)]))
    _check(out)
    assert "prepared" not in out


def test_gpu_benchmark_without_cuda_says_so_and_exits_0():
    proc = _run([sys.executable, str(SCRIPT)], timeout=120)  # CUDA_VISIBLE_DEVICES="": no device
    out = _last_json(proc)
    assert out == {"benchmark": "gpu", "skipped": "no CUDA device"}
    assert "needs a CUDA device" in proc.stdout
