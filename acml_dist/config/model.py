"""Schema of the `model` group: the GIN and the projection heads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    schema: str = "hu"  # atom/bond feature schema: hu | ogb
    num_layers: int = 5
    emb_dim: int = 300
    dropout: float = 0.2
    jk: str = "last"  # last | sum | concat
    pooling: str = "sum"  # sum | mean | max | attention
    proj_dim: int = 512
    head_layers: int = 1
    head_dropout: float = 0.1
