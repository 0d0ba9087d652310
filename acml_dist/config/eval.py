"""Schema of the `eval` group: retrieval, isomers, property prediction, probing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class EvalConfig:
    split: str = "test"
    retrieval_pools: list[int] = field(default_factory=lambda: [128, 1000, 10000, 0])  # 0: whole split
    topk: list[int] = field(default_factory=lambda: [1, 5, 10])
    isomers: bool = True
    probing: bool = True
    property_datasets: list[str] = field(default_factory=lambda: ["esol", "freesolv", "lipophilicity"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    split_kind: str = "scaffold"  # scaffold | random
    finetune_epochs: int = 30
    patience: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    linear_probe: bool = True
    embedding_map: bool = True
    max_molecules: int = 0  # cap on evaluated molecules; 0: all
    probe_molecules: int = 2000  # molecules used by the descriptor / functional-group probes
    attributions: int = 4  # molecules drawn with atom-level attributions (0: none)
    # torch intra-op threads while evaluating on CPU (0: leave as is). Small molecular graphs gain little from
    # more threads and lose badly when cores are shared: one ESOL epoch took 1 s with 1 thread, 20 s with 2.
    num_threads: int = 1
    retrieval_chunk: int = 1024  # queries scored at once: memory O(chunk x pool)
    # Also write the report here (e.g. EVALUATION.md), figures copied to <its folder>/<report_figures>.
    report: Optional[str] = None
    report_figures: str = "docs/figures/evaluation"
