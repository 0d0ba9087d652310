"""Schema of one frozen teacher (entries of the `teachers` mapping: name -> TeacherConfig)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class TeacherConfig:
    # Teacher kind: smiles_lm | fingerprint | descriptors | cress_smiles | cress_nmr13c | img2mol | ...
    kind: str = "fingerprint"
    modality: str = "smiles"
    # Checkpoint: local dir/file, `models:/acml-teacher-<name>/...`, or None for the offline default.
    path: Optional[str] = None
    pooling: str = "cls"  # cls | mean (language models)
    batch_size: int = 128
    device: str = "auto"  # auto | cpu | cuda
    max_length: int = 256
    # torch intra-op threads per embedding actor on CPU; 0: the node's CPUs / embed_actors. On a shared box
    # one thread per actor and one actor per core beats multi-threaded actors (measured 2x, BENCHMARKS.md).
    cpu_threads: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # kind-specific (e.g. radius, n_bits)
    weight: float = 1.0  # weight of this modality in the loss
    source: str = "cache"  # cache (embedding shards) | online
