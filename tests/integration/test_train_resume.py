"""Training on real shards with 2 DeepSpeed ranks over gloo: a rank killed with SIGKILL midway, then a
resume that finishes the run with its loss curve continuing from the checkpoint; MLflow run logged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, free_port, kill_group, rank_env, tiny_train_overrides

pytestmark = pytest.mark.integration


def _launch(overrides: list[str], port: int, logs: Path, tag: str) -> list[subprocess.Popen]:
    procs = []
    for rank in range(2):
        env = rank_env(rank, 2, port)
        out = open(logs / f"{tag}-rank{rank}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, str(REPO / "acml_dist/train.py"), *overrides],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        )
    return procs


# Far more steps than the kill point: on an idle machine 12 tiny steps finished before the test could
# kill a rank after the step-6 checkpoint.
TOTAL_STEPS = 60


def test_kill9_midway_then_resume_continues_curve(tiny_shards, tmp_path, mlflow_store):
    run = tmp_path / "run"
    overrides = [
        *tiny_train_overrides(tiny_shards, run, tmp_path),
        f"trainer.max_steps={TOTAL_STEPS}",
        "trainer.checkpoint_every=3",
        "trainer.log_every=2",
        "trainer.warmup_steps=2",
        "trainer.lr=3e-3",
    ]
    first = _launch(overrides, free_port(), tmp_path, "first")
    latest = run / "checkpoints" / "latest"
    deadline = time.time() + 240
    while time.time() < deadline and not (latest.exists() and latest.read_text().strip() >= "step00000006"):
        assert all(p.poll() is None for p in first), (tmp_path / "first-rank0.log").read_text()[-3000:]
        time.sleep(0.2)
    assert latest.exists(), "no checkpoint within 240 s"
    first[1].send_signal(signal.SIGKILL)  # a rank dies midway; its peer fails in the next collective
    try:
        first[0].wait(timeout=90)
    except subprocess.TimeoutExpired:
        first[0].kill()
    first[0].wait()
    assert first[1].wait() == -signal.SIGKILL
    killed_at = int(latest.read_text().strip().removeprefix("step"))
    assert 6 <= killed_at < TOTAL_STEPS

    second = _launch(overrides, free_port(), tmp_path, "second")
    codes = [p.wait(timeout=300) for p in second]
    log0 = (tmp_path / "second-rank0.log").read_text()
    assert codes == [0, 0], log0[-3000:]
    assert f"at step {killed_at}" in log0  # resumed from the checkpoint, not from scratch
    result = json.loads(log0.strip().splitlines()[-1])
    assert result["steps"] == TOTAL_STEPS and result["world_size"] == 2 and result["global_batch"] == 32
    history = json.loads((run / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, TOTAL_STEPS + 1))  # one curve, no restart, no gap
    losses = [h["loss"] for h in history]
    assert losses[killed_at] < losses[0]  # the first resumed step continues the trained curve
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert (run / "loss_curve.png").stat().st_size > 1000
    assert (Path(result["model_dir"]) / "model.safetensors").exists()

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_store)
    logged = client.get_run(result["run_id"])
    assert logged.data.params["world_size"] == "2"
    assert "final_retrieval_top1" in logged.data.metrics
    steps = [m.step for m in client.get_metric_history(result["run_id"], "loss")]
    assert steps and min(steps) > killed_at and max(steps) == TOTAL_STEPS


def test_diverging_run_skips_non_finite_steps_then_stops(tiny_shards, tmp_path, mlflow_store):
    """A learning rate of 1e12 blows the weights up after the first steps: the loop skips each non-finite
    step (no backward, no update) and stops with a clear error at trainer.max_bad_steps in a row."""
    env = rank_env(0, 1, free_port())
    overrides = [
        *tiny_train_overrides(tiny_shards, tmp_path / "run", tmp_path),
        "trainer.max_steps=20",
        "trainer.warmup_steps=0",  # DeepSpeed's scheduler needs >= 1: build_ds_config maps 0 to a flat start
        "trainer.lr=1e12",
        "trainer.max_bad_steps=3",
        "trainer.log_every=1",
    ]
    proc = subprocess.run(
        [sys.executable, str(REPO / "acml_dist/train.py"), *overrides],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "non-finite loss, step skipped (1 in a row)" in log, log[-3000:]
    assert "non-finite loss, step skipped (2 in a row)" in log
    assert "3 consecutive non-finite losses" in log and "trainer.max_bad_steps=3" in log
    assert "step 1/20 loss" in log.split("non-finite")[0]  # a finite step ran before the blow-up


def test_mlflow_server_killed_during_training_the_run_completes(tiny_shards, tmp_path):
    """A real `mlflow server` is SIGKILLed while a rank logs to it: training goes on to the last step, one
    warning says where the metrics went, and the metrics after the outage are kept in the run folder."""
    from mlflow import MlflowClient

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=open(tmp_path / "mlflow.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    client = MlflowClient(uri)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            client.search_experiments()
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(1)
    run = tmp_path / "run"
    overrides = [
        *tiny_train_overrides(tiny_shards, run, tmp_path),
        "trainer.max_steps=1500",
        "trainer.log_every=5",
        f"tracking.tracking_uri={uri}",
    ]
    env = {
        **rank_env(0, 1, free_port()),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "MLFLOW_TRACKING_URI": uri,
    }
    with open(tmp_path / "rank0.log", "w") as out:
        rank = subprocess.Popen(
            [sys.executable, str(REPO / "acml_dist/train.py"), *overrides],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            logged: list = []
            deadline = time.time() + 240
            while time.time() < deadline and not logged and rank.poll() is None:
                runs = [r for e in client.search_experiments() for r in client.search_runs(e.experiment_id)]
                logged = [r for r in runs if "loss" in r.data.metrics]
                time.sleep(0.5)
            assert logged, (tmp_path / "rank0.log").read_text()[-3000:]
        finally:
            kill_group(server)
        code = rank.wait(timeout=600)
    log0 = (tmp_path / "rank0.log").read_text()
    assert code == 0, log0[-3000:]
    assert log0.count("MLflow tracking failed") == 1, log0[-3000:]
    assert "still unreachable" in log0
    result = json.loads(log0.strip().splitlines()[-1])
    assert result["steps"] == 1500
    kept = [json.loads(line) for line in (run / "metrics_offline.jsonl").read_text().splitlines()]
    assert max(k["step"] for k in kept) == 1500 and any("loss" in k["metrics"] for k in kept)
    assert (Path(result["model_dir"]) / "model.safetensors").exists()


def test_wall_clock_budget_stops_both_ranks_and_saves(tiny_shards, tmp_path):
    """trainer.max_minutes: two ranks stop at the same step once rank 0's clock passes the budget, far
    before max_steps, and the run still evaluates and saves its model."""
    overrides = [
        *tiny_train_overrides(tiny_shards, tmp_path / "run", tmp_path),
        "trainer.max_steps=100000",
        "trainer.max_minutes=0.002",  # 0.12 s: a few steps
        "trainer.log_every=1",
        "tracking.enabled=false",
    ]
    procs = _launch(overrides, free_port(), tmp_path, "budget")
    codes = [p.wait(timeout=300) for p in procs]
    logs = [(tmp_path / f"budget-rank{r}.log").read_text() for r in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "trainer.max_minutes=0.002 reached at step" in logs[0]
    result = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert 1 <= result["steps"] < 100000
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_init_from_a_saved_model_continues_its_training(tiny_shards, tmp_path):
    """Continued pretraining (`init_from`): a second run starts from the first run's saved model, so its
    first loss is near where the first run ended, not where it began; a GIN of another width is refused."""
    base = [
        *tiny_train_overrides(tiny_shards, tmp_path / "a", tmp_path),
        *["tracking.enabled=false", "trainer.log_every=1", "trainer.warmup_steps=2", "trainer.lr=3e-3"],
        "trainer.checkpoint_every=0",
    ]

    def train(tag: str, extra: list[str]) -> tuple[list[int], str]:
        procs = _launch([*base, *extra], free_port(), tmp_path, tag)
        codes = [p.wait(timeout=300) for p in procs]
        return codes, (tmp_path / f"{tag}-rank0.log").read_text()

    codes, log_a = train("a", ["trainer.max_steps=40"])
    assert codes == [0, 0], log_a[-3000:]
    first = [h["loss"] for h in json.loads((tmp_path / "a" / "history.json").read_text())]

    init = f"init_from={tmp_path / 'a'}"
    codes, log_b = train("b", [f"output={tmp_path / 'b'}", init, "trainer.max_steps=3"])
    assert codes == [0, 0], log_b[-3000:]
    second = [h["loss"] for h in json.loads((tmp_path / "b" / "history.json").read_text())]
    assert second[0] < first[0] - 0.5 * (first[0] - min(first[-5:])), (first, second)  # > halfway down A's
    assert f"initialised from {tmp_path / 'a' / 'model'}: GIN, heads of ['morgan']" in log_b
    saved = json.loads((tmp_path / "b" / "model" / "config.json").read_text())
    assert saved["extra"]["init_from"] == str(tmp_path / "a")

    codes, log_c = train("c", [f"output={tmp_path / 'c'}", init, "model.emb_dim=32"])
    assert codes != [0, 0] and "GIN differs from this run's at gin." in log_c, log_c[-3000:]
