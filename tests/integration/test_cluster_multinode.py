"""Two "nodes" on this machine: cluster/multinode_local.sh starts two `deepspeed --no_ssh` launchers (node
ranks 0 and 1, master on 127.0.0.1) that must form ONE gloo job whose contrastive loss uses the negatives
of both nodes, as cluster/slurm/train.sbatch does across real nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import featurise, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "multinode_local.sh"
PROBE = Path(__file__).with_name("cluster_multinode_probe.py")


def run_two_nodes(
    workdir: Path, overrides: list[str], *, script: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DS_ACCELERATOR": "cpu",
        "MASTER_PORT": str(free_port()),
        "ACML_MULTINODE_DIR": str(workdir),
        "OMP_NUM_THREADS": "1",
        "ACML_LOG_LEVEL": "INFO",  # non-zero ranks log too: each node's log shows the job its rank joined
    }
    if script is not None:
        env["ACML_TRAIN_SCRIPT"] = str(script)
    return subprocess.run([str(SCRIPT), *overrides], env=env, capture_output=True, text=True, timeout=timeout)


def node_log(workdir: Path, node: int) -> str:
    return (workdir / f"node{node}.log").read_text()


def probe_records(workdir: Path) -> list[dict]:
    records = []
    for node in (0, 1):
        for line in node_log(workdir, node).splitlines():
            if line.startswith("PROBE {"):
                records.append(json.loads(line[len("PROBE ") :]))
    return sorted(records, key=lambda r: r["rank"])


@pytest.fixture(scope="module")
def nci_shards(tmp_path_factory, ray_local) -> Path:
    """160 NCI molecules featurised into shards (126 train) with the Morgan-fingerprint embedding cache."""
    root = tmp_path_factory.mktemp("multinode") / "shards" / "nci"
    return featurise(root, None, "data=nci5k", "data.limit=160", "data.samples_per_shard=64")


def test_two_nodes_train_one_model(nci_shards, tmp_path):
    """acml_dist/train.py under the two launchers: one run, world 2, global batch = 2 x micro-batch."""
    import mlflow

    micro = 16
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_two_nodes(
        tmp_path / "nodes",
        [
            "name=mn",
            f"shards={nci_shards}",
            f"runs_root={tmp_path / 'runs'}",
            "teachers=fingerprint",
            "model=gin_small",
            "model.num_layers=2",
            "model.emb_dim=16",
            "model.proj_dim=16",
            "trainer=cpu",
            f"trainer.micro_batch={micro}",
            "trainer.max_steps=3",
            "trainer.log_every=1",
            "trainer.warmup_steps=1",
            f"tracking.tracking_uri={tracking}",
        ],
    )
    logs = [node_log(tmp_path / "nodes", n) for n in (0, 1)]
    assert out.returncode == 0, out.stderr[-4000:] + logs[0][-3000:] + logs[1][-3000:]
    # Each node's launcher ran one rank of the same 2-rank job (the ranks log which job they joined).
    line = f"world 2, global batch {2 * micro} (= 2 ranks x {micro} x 1 accumulation)"
    assert f"[rank 0] acml.train: {line}" in logs[0] and f"[rank 1] acml.train: {line}" in logs[1]
    assert "[rank 1]" not in logs[0] and "[rank 0]" not in logs[1]
    # Rank 0 reports the run: 3 optimiser steps on the global batch, a saved model.
    result = json.loads(next(ln for ln in logs[0].splitlines() if ln.startswith('{"model_dir"')))
    assert (result["world_size"], result["global_batch"], result["steps"]) == (2, 2 * micro, 3)
    assert Path(result["model_dir"]).is_dir()
    # One MLflow run, recorded by rank 0 only, with negatives gathered across the two nodes.
    run = mlflow.MlflowClient(tracking).get_run(result["run_id"])
    params = run.data.params
    assert params["world_size"] == "2" and params["global_batch"] == str(2 * micro)
    assert params["loss.gather"] == "True"
    assert len(mlflow.MlflowClient(tracking).search_runs([run.info.experiment_id])) == 1
    assert run.data.metrics["loss"] > 0


def test_two_launchers_form_one_job_with_gathered_negatives(tmp_path):
    out = run_two_nodes(tmp_path, ["trainer.micro_batch=4", "name=probe"], script=PROBE)
    assert out.returncode == 0, out.stderr[-4000:]
    records = probe_records(tmp_path)
    # One record per node: rank r ran under the launcher of node r, both in one world of 2.
    assert [(r["rank"], r["node_rank"], r["world_size"]) for r in records] == [(0, 0, 2), (1, 1, 2)]
    assert all(r["argv"] == ["trainer.micro_batch=4", "name=probe"] for r in records)
    # The loss saw the global batch (2 x micro-batch): the mean over ranks equals the single-process loss
    # over all 8 rows, which neither node's local loss does; gradients came back through the gather.
    for r in records:
        assert r["loss_gathered_mean"] == pytest.approx(r["loss_global_reference"], rel=1e-5)
        assert abs(r["loss_local"] - r["loss_global_reference"]) > 1e-3
        assert r["grad_finite"]
    hostfile = (tmp_path / "hostfile").read_text().split("\n")
    assert hostfile[:2] == ["node0 slots=1", "node1 slots=1"]


def test_a_failing_node_fails_the_job_and_stops_the_other(tmp_path):
    # Rank 1 dies; rank 0 would wait forever (as in a collective with a dead peer): the script must stop it.
    script = tmp_path / "rank.py"
    script.write_text(
        "import os, sys, time\n"
        "rank = int(os.environ['RANK'])\n"
        "print(f'RANK {rank} of {os.environ[\"WORLD_SIZE\"]} started', flush=True)\n"
        "if rank == 1:\n"
        "    sys.exit(3)\n"
        "time.sleep(3600)\n"
    )
    started = time.monotonic()
    out = run_two_nodes(tmp_path / "run", [], script=script, timeout=300)
    assert out.returncode != 0
    assert time.monotonic() - started < 240
    assert "RANK 1 of 2 started" in node_log(tmp_path / "run", 1)
    assert "RANK 0 of 2 started" in node_log(tmp_path / "run", 0)
    # Nothing of the job is left running.
    ps = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True)
    assert ps.stdout.strip() == ""


def test_slurm_script_runs_the_same_recipe_on_a_simulated_allocation(tmp_path):
    """cluster/slurm/train.sbatch end to end without SLURM: `scontrol` and `srun` stand-ins on PATH play a
    2-node allocation whose node names both resolve to this machine; the script's own hostfile, rendezvous
    address and per-node rank lookup (SLURMD_NODENAME) must form one job of 2 ranks."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        '#!/bin/bash\n[[ "$1 $2" == "show hostnames" ]] || exit 2\ntr "," "\\n" <<<"$3"\n'
    )
    # srun: one task per node, each with its node's SLURMD_NODENAME and its own output file; options ignored.
    (bin_dir / "srun").write_text(
        "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\npids=()\n"
        "for node in ${SLURM_JOB_NODELIST//,/ }; do\n"
        '  SLURMD_NODENAME=$node "$@" >"$SRUN_OUT/$node.out" 2>&1 & pids+=($!)\ndone\n'
        'rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc\n'
    )
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "localhost,127.0.0.1",
        "GPUS_PER_NODE": "1",
        "MASTER_PORT": str(free_port()),
        "ACML_VENV": str(Path(sys.executable).parents[1]),
        "ACML_HOSTFILE_DIR": str(tmp_path),
        "ACML_TRAIN_SCRIPT": str(PROBE),
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "SRUN_OUT": str(tmp_path),
    }
    out = subprocess.run(
        ["bash", str(ROOT / "cluster/slurm/train.sbatch"), "name=slurm"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tasks = {node: (tmp_path / f"{node}.out").read_text() for node in ("localhost", "127.0.0.1")}
    assert out.returncode == 0, out.stderr[-3000:] + "".join(t[-3000:] for t in tasks.values())
    assert (tmp_path / "hostfile-4242").read_text() == "localhost slots=1\n127.0.0.1 slots=1\n"
    # The task on the second node looked itself up in the hostfile: node rank 1.
    assert "launch_node: node 1 of 2, master localhost:" in tasks["127.0.0.1"]
    records = sorted(
        (
            json.loads(ln[len("PROBE ") :])
            for t in tasks.values()
            for ln in t.splitlines()
            if ln.startswith("PROBE {")
        ),
        key=lambda r: r["rank"],
    )
    assert [(r["rank"], r["node_rank"], r["world_size"]) for r in records] == [(0, 0, 2), (1, 1, 2)]
    assert all(r["argv"] == ["name=slurm"] for r in records)
    assert records[0]["loss_gathered_mean"] == pytest.approx(records[0]["loss_global_reference"], rel=1e-5)
