"""Two launcher "nodes" vs one launcher with the same world size; ends with one JSON line.

    python benchmarks/cluster_multinode.py --quick      # 400 molecules, 10 steps per run, 1 round
    python benchmarks/cluster_multinode.py              # 1000 molecules, 30 steps per run, 2 rounds

Runs acml_dist/train.py with 2 ranks twice per round, alternating: (a) one `deepspeed --no_ssh` launcher
with both ranks (hostfile `node0 slots=2`), (b) cluster/multinode_local.sh, two launchers with one rank each
(the SLURM recipe on 127.0.0.1). Same data, model and steps; reports rank 0's training throughput
(molecules/s over optimiser steps) and the launch-to-exit wall time, and the ratio (b)/(a) from this run.
Rates drift with machine load: compare ratios of one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_shards(out: Path, molecules: int) -> Path:
    from acml_dist.config import load_config
    from acml_dist.data.featurize import featurize_corpus
    from acml_dist.teachers.cache import embed_dataset

    root = out / "shards" / "bench"
    featurize_corpus(
        load_config(
            "featurize",
            [
                "data=nci5k",
                f"data.limit={molecules}",
                "data.split=random",
                "data.samples_per_shard=200",
                f"output={root}",
                "cluster.num_cpus=2",
            ],
        )
    )
    embed_dataset(load_config("embed", [f"shards={root}", "teachers=fingerprint", "cluster.num_cpus=2"]))
    import ray

    ray.shutdown()  # free the cores for the training runs
    return root


def _env(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "MASTER_PORT": str(_free_port()),
        "ACML_MULTINODE_DIR": str(workdir),
    }


def run_once(mode: str, shards: Path, out: Path, steps: int, micro: int) -> dict[str, Any]:
    workdir = out / f"{mode}-{time.monotonic_ns()}"
    workdir.mkdir(parents=True)
    overrides = [
        "name=bench",
        f"shards={shards}",
        f"runs_root={workdir / 'runs'}",
        "teachers=fingerprint",
        "model=gin_small",
        "trainer=cpu",
        f"trainer.micro_batch={micro}",
        f"trainer.max_steps={steps}",
        f"trainer.log_every={steps}",
        "trainer.checkpoint_every=0",
        "tracking.enabled=false",
    ]
    env = _env(workdir)
    if mode == "one_launcher":
        hostfile = workdir / "hostfile"
        hostfile.write_text("node0 slots=2\n")
        launcher = str(ROOT / "cluster/slurm/launch_node.sh")
        cmd = [launcher, str(hostfile), "0", "127.0.0.1", env["MASTER_PORT"]]
    else:
        cmd = [str(ROOT / "cluster/multinode_local.sh")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + overrides, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    if mode != "one_launcher":
        text += (workdir / "node0.log").read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed ({proc.returncode}):\n{text[-4000:]}")
    result = json.loads(next(ln for ln in text.splitlines() if ln.startswith('{"model_dir"')))
    assert result["world_size"] == 2, result
    return {"molecules_per_s": result["molecules_per_s"], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--molecules", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--micro-batch", type=int, default=32)
    args = parser.parse_args()
    molecules = args.molecules or (400 if args.quick else 1000)
    steps = args.steps or (10 if args.quick else 30)
    rounds = args.rounds or (1 if args.quick else 2)

    with tempfile.TemporaryDirectory(prefix="acml-bench-mn-") as tmp:
        out = Path(tmp)
        shards = make_shards(out, molecules)
        runs: dict[str, list[dict[str, Any]]] = {"one_launcher": [], "two_launchers": []}
        for r in range(rounds):
            order = ("one_launcher", "two_launchers")
            for mode in order if r % 2 == 0 else order[::-1]:  # alternate: drift hits both alike
                runs[mode].append(run_once(mode, shards, out, steps, args.micro_batch))
                print(f"round {r}: {mode:14s} {runs[mode][-1]}", file=sys.stderr)
    summary: dict[str, Any] = {
        "benchmark": "cluster_multinode",
        "molecules": molecules,
        "steps": steps,
        "rounds": rounds,
        "micro_batch": args.micro_batch,
        "world_size": 2,
    }
    for mode, values in runs.items():
        summary[f"{mode}_mol_per_s"] = round(statistics.median(v["molecules_per_s"] for v in values), 1)
        summary[f"{mode}_wall_s"] = round(statistics.median(v["wall_s"] for v in values), 1)
    summary["throughput_ratio_two_vs_one"] = round(
        summary["two_launchers_mol_per_s"] / summary["one_launcher_mol_per_s"], 3
    )
    summary["wall_ratio_two_vs_one"] = round(
        summary["two_launchers_wall_s"] / summary["one_launcher_wall_s"], 3
    )
    print(
        f"two launchers / one launcher: throughput x{summary['throughput_ratio_two_vs_one']}, "
        f"wall x{summary['wall_ratio_two_vs_one']}",
        file=sys.stderr,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
