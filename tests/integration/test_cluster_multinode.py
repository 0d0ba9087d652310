"""Two "nodes" on this machine: cluster/multinode_local.sh starts two `deepspeed --no_ssh` launchers (node
ranks 0 and 1, master on 127.0.0.1) that must form ONE gloo job whose contrastive loss uses the negatives
of both nodes, as cluster/slurm/train.sbatch does across real nodes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "multinode_local.sh"
PROBE = Path(__file__).with_name("cluster_multinode_probe.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_nodes(workdir: Path, overrides: list[str], *, script: Path | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DS_ACCELERATOR": "cpu",
        "MASTER_PORT": str(free_port()),
        "ACML_MULTINODE_DIR": str(workdir),
        "OMP_NUM_THREADS": "1",
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
                records.append(json.loads(line[len("PROBE "):]))
    return sorted(records, key=lambda r: r["rank"])


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
