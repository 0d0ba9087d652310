"""Schemas of the `loss` and `trainer` groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class LossConfig:
    kind: str = "clip"  # clip | acml_soft
    init_logit_scale: float = 14.285714  # 1/0.07
    max_logit_scale: float = 100.0
    learnable_scale: bool = True
    gather: bool = True  # all-gather negatives across ranks (with gradients)


@dataclass
class TrainerConfig:
    micro_batch: int = 128
    grad_accum: int = 1
    epochs: int = 1
    max_steps: Optional[int] = None
    # Wall-clock budget: stop after the first optimiser step past it (then evaluate, save, register as
    # usual). For jobs under a scheduler's time limit; None: no limit.
    max_minutes: Optional[float] = None
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_steps: int = 50
    grad_clip: float = 1.0
    zero_stage: int = 0
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    checkpoint_every: int = 200
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    max_bad_steps: int = 5  # consecutive NaN/Inf losses before the run stops
    seed: int = 0
    num_workers: int = 0  # loader worker processes per rank (they live across epochs)
    # Batches grouped by which modalities their molecules have (`acml_dist.data.loader`): a sparse modality
    # contrasts against a batch of negatives, not a handful. On mm100k (6,000 steps) it raised graph -> 13C
    # R@1 from 0.740 to 0.827 and every other modality too (EVALUATION.md "Batches grouped by modality").
    # Where every molecule has every modality it changes nothing.
    modality_batches: bool = True
    # Batches that also group molecules by heavy-atom composition, so isomers are each other's in-batch
    # negatives (hard negatives; `acml_dist.data.loader`). Pools hold `buffer_shards` shards per reader: a
    # larger buffer puts more isomers together. EVALUATION.md "Isomer batches" measures it.
    isomer_batches: bool = False
    buffer_shards: int = 4
    # A shard or cache whose sha256 / rows / keys differ from its manifest: error (stop, naming it) | skip
    # (log a warning naming it, count it, train on the rest)
    on_bad_shard: str = "error"
    backend: str = "auto"  # auto (nccl on GPU, gloo on CPU) | nccl | gloo
    extra_ds_config: dict = field(default_factory=dict)
    register: bool = False  # register the final model in MLflow at the end of train.run
