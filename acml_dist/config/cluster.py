"""Schema of the `cluster` group: where Ray runs and what resources stages get."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ClusterConfig:
    # Ray address: None/"local" starts an embedded local Ray; "auto" joins a running cluster; "processes":
    # featurisation in a local process pool without Ray (a node that has RDKit but not Ray).
    address: Optional[str] = None
    num_cpus: Optional[int] = None  # embedded Ray only; None: all cores
    object_store_memory: Optional[int] = 500_000_000
    featurize_workers: int = 0  # 0: one per CPU
    embed_actors: int = 1
    train_workers: int = 2  # Ray Train workers (ranks)
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    train_launcher: str = "ray_train"  # ray_train | deepspeed (hostfile built from Ray nodes)
