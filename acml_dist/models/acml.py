"""The ACML model: the trainable GIN, per-modality projection heads on both sides and per-modality
temperatures. Teachers themselves are frozen and live outside: the model sees their embeddings."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from acml_dist.models.gin import GIN


class ProjectionHead(nn.Module):
    """Linear -> GELU -> Linear -> Dropout -> +residual -> LayerNorm (the authors' head), stackable."""

    def __init__(self, in_dim: int, proj_dim: int, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(max(1, layers)):
            block = nn.ModuleDict(
                {
                    "proj": nn.Linear(in_dim if i == 0 else proj_dim, proj_dim),
                    "fc": nn.Linear(proj_dim, proj_dim),
                    "norm": nn.LayerNorm(proj_dim),
                }
            )
            self.blocks.append(block)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            projected = block["proj"](x)
            x = self.dropout(block["fc"](nn.functional.gelu(projected)))
            x = block["norm"](x + projected)
        return x


class ACMLModel(nn.Module):
    """GIN + heads. `model_cfg` is a ModelConfig-like mapping; `teacher_dims` maps teacher name -> dim."""

    def __init__(
        self,
        model_cfg: Any,
        teacher_dims: dict[str, int],
        init_logit_scale: float = 1 / 0.07,
        max_logit_scale: float = 100.0,
        learnable_scale: bool = True,
    ) -> None:
        super().__init__()
        cfg = dict(model_cfg)
        self.model_cfg = {k: cfg[k] for k in sorted(cfg)}
        self.teacher_dims = {str(k): int(v) for k, v in teacher_dims.items()}
        self.max_logit_scale = float(max_logit_scale)
        self.gin = GIN(
            schema=cfg.get("schema", "hu"),
            num_layers=int(cfg.get("num_layers", 5)),
            emb_dim=int(cfg.get("emb_dim", 300)),
            dropout=float(cfg.get("dropout", 0.2)),
            jk=cfg.get("jk", "last"),
            pooling=cfg.get("pooling", "sum"),
        )
        proj, layers = int(cfg.get("proj_dim", 512)), int(cfg.get("head_layers", 1))
        drop = float(cfg.get("head_dropout", 0.1))
        emb = self.gin.emb_dim
        self.graph_heads = nn.ModuleDict(
            {n: ProjectionHead(emb, proj, layers, drop) for n in self.teacher_dims}
        )
        self.teacher_heads = nn.ModuleDict(
            {n: ProjectionHead(d, proj, layers, drop) for n, d in self.teacher_dims.items()}
        )
        # log-parametrised as in CLIP; a frozen scale is a buffer so optimisers and ZeRO never see it.
        init = torch.full((len(self.teacher_dims),), math.log(init_logit_scale))
        if learnable_scale:
            self.log_logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_logit_scale", init)
        self._index = {n: i for i, n in enumerate(self.teacher_dims)}

    @property
    def teachers(self) -> list[str]:
        return list(self.teacher_dims)

    def encode(self, graph) -> Tensor:
        """The pretrained representation (B, emb_dim) of a torch_geometric Batch."""
        return self.gin(graph)

    def project_graph(self, h: Tensor, name: str) -> Tensor:
        return self.graph_heads[name](h)

    def project_teacher(self, emb: Tensor, name: str) -> Tensor:
        return self.teacher_heads[name](emb)

    def logit_scale(self, name: str) -> Tensor:
        return self.log_logit_scale[self._index[name]].exp().clamp(max=self.max_logit_scale)

    def forward(self, graph, embeddings: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Per teacher: (graph projection, teacher projection, logit scale). One GIN pass for all heads."""
        h = self.encode(graph)
        return {
            n: (self.project_graph(h, n), self.project_teacher(embeddings[n], n), self.logit_scale(n))
            for n in self.teacher_dims
            if n in embeddings
        }
