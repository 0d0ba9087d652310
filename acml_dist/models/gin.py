"""The GIN graph encoder of DESIGN.md section 2 on torch-geometric, for the Hu and OGB feature schemas.

Hu schema ("pretrain-gnns"): atom = atomic number (120) + chirality (3) embeddings, summed; bond = bond type
(6: 4 = self-loop, 5 = mask) + direction (3) embeddings added to messages; self-loops added in every layer.
OGB schema: per-feature atom / bond embeddings (the OGB vocabularies) summed, PyG's GINEConv.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import add_self_loops

HU_ATOM_DIMS = (120, 3)
HU_BOND_DIMS = (6, 3)
HU_SELF_LOOP_BOND = 4
OGB_ATOM_DIMS = (119, 5, 12, 12, 10, 6, 6, 2, 2)
OGB_BOND_DIMS = (5, 6, 2)


class FeatureEmbedding(nn.Module):
    """Sum of one embedding per integer feature column (Hu and OGB atom/bond encoders alike)."""

    def __init__(self, dims: tuple[int, ...], emb_dim: int) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(d, emb_dim) for d in dims)
        for emb in self.embeddings:
            nn.init.xavier_uniform_(emb.weight)

    def forward(self, feats: Tensor) -> Tensor:
        out = self.embeddings[0](feats[:, 0])
        for i in range(1, len(self.embeddings)):
            out = out + self.embeddings[i](feats[:, i])
        return out


class HuGINConv(MessagePassing):
    """pretrain-gnns GINConv: sum_j (h_j + e_ij) over neighbours and a self-loop, then the MLP."""

    def __init__(self, emb_dim: int) -> None:
        super().__init__(aggr="add")
        self.mlp = nn.Sequential(nn.Linear(emb_dim, 2 * emb_dim), nn.ReLU(), nn.Linear(2 * emb_dim, emb_dim))
        self.edge_embedding = FeatureEmbedding(HU_BOND_DIMS, emb_dim)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        edge_index, _ = add_self_loops(edge_index, num_nodes=x.size(0))
        loops = torch.zeros(x.size(0), edge_attr.size(1), dtype=edge_attr.dtype, device=edge_attr.device)
        loops[:, 0] = HU_SELF_LOOP_BOND
        edge_emb = self.edge_embedding(torch.cat([edge_attr, loops], dim=0))
        return self.mlp(self.propagate(edge_index, x=x, edge_attr=edge_emb))

    def message(self, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        return x_j + edge_attr


class OgbGINConv(nn.Module):
    """OGB-style GIN layer: PyG GINEConv with a learnable eps and OGB bond embeddings."""

    def __init__(self, emb_dim: int) -> None:
        super().__init__()
        from torch_geometric.nn import GINEConv

        mlp = nn.Sequential(nn.Linear(emb_dim, 2 * emb_dim), nn.ReLU(), nn.Linear(2 * emb_dim, emb_dim))
        self.conv = GINEConv(mlp, train_eps=True)
        self.edge_embedding = FeatureEmbedding(OGB_BOND_DIMS, emb_dim)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        return self.conv(x, edge_index, self.edge_embedding(edge_attr))


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that, on CPU, normalises a bf16 / fp16 input in float32 and returns the input's dtype.
    DeepSpeed's bf16 casts parameters but keeps the running statistics float32; torch's CPU batch_norm
    refuses that mix ("expected scalar type BFloat16 but found Float"), CUDA's takes it (that path is
    unchanged). Same parameters, buffers and state-dict keys as nn.BatchNorm1d; a float32 model and any CUDA
    tensor take nn.BatchNorm1d's own path."""

    def forward(self, x: Tensor) -> Tensor:
        low = x.dtype != torch.float32 or (self.weight is not None and self.weight.dtype != torch.float32)
        if not low or x.device.type != "cpu":
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        stats = not self.training or self.track_running_stats
        out = nn.functional.batch_norm(
            x.float(),
            self.running_mean if stats else None,
            self.running_var if stats else None,
            None if self.weight is None else self.weight.float(),
            None if self.bias is None else self.bias.float(),
            use_batch, factor, self.eps,
        )  # fmt: skip
        return out.to(x.dtype)


class GIN(nn.Module):
    """Node encoder + `num_layers` GIN layers (MLP -> BatchNorm -> ReLU except last -> dropout), JK, pooling,
    readout Linear-ReLU-Linear. Output (B, emb_dim): the pretrained graph representation."""

    def __init__(
        self,
        schema: str = "hu",
        num_layers: int = 5,
        emb_dim: int = 300,
        dropout: float = 0.2,
        jk: str = "last",
        pooling: str = "sum",
    ) -> None:
        super().__init__()
        if schema not in ("hu", "ogb"):
            raise ValueError(f"model.schema must be hu or ogb, got {schema!r}")
        if jk not in ("last", "sum", "concat"):
            raise ValueError(f"model.jk must be last, sum or concat, got {jk!r}")
        if num_layers < 1:
            raise ValueError("model.num_layers must be >= 1")
        self.schema, self.jk, self.dropout = schema, jk, dropout
        self.atom_encoder = FeatureEmbedding(HU_ATOM_DIMS if schema == "hu" else OGB_ATOM_DIMS, emb_dim)
        conv = HuGINConv if schema == "hu" else OgbGINConv
        self.convs = nn.ModuleList(conv(emb_dim) for _ in range(num_layers))
        self.norms = nn.ModuleList(BatchNorm(emb_dim) for _ in range(num_layers))
        rep_dim = emb_dim * num_layers if jk == "concat" else emb_dim
        self.pool = _make_pool(pooling, rep_dim)
        self.readout = nn.Sequential(nn.Linear(rep_dim, emb_dim), nn.ReLU(), nn.Linear(emb_dim, emb_dim))
        self.emb_dim = emb_dim

    def node_embeddings(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        h = self.atom_encoder(x)
        layers = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(conv(h, edge_index, edge_attr))
            if i < len(self.convs) - 1:
                h = torch.relu(h)
            h = nn.functional.dropout(h, self.dropout, training=self.training)
            layers.append(h)
        if self.jk == "last":
            return layers[-1]
        if self.jk == "sum":
            return torch.stack(layers).sum(0)
        return torch.cat(layers, dim=1)

    def forward(self, graph) -> Tensor:  # graph: torch_geometric Batch
        nodes = self.node_embeddings(graph.x, graph.edge_index, graph.edge_attr)
        batch = graph.batch if graph.batch is not None else graph.x.new_zeros(graph.x.size(0))
        return self.readout(self.pool(nodes, batch, dim_size=int(graph.num_graphs)))


def _make_pool(kind: str, dim: int) -> nn.Module:
    from torch_geometric.nn import aggr

    pools = {"sum": aggr.SumAggregation, "mean": aggr.MeanAggregation, "max": aggr.MaxAggregation}
    if kind in pools:
        return pools[kind]()
    if kind == "attention":
        return aggr.AttentionalAggregation(gate_nn=nn.Linear(dim, 1))
    raise ValueError(f"model.pooling must be sum, mean, max or attention, got {kind!r}")
