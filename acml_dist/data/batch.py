"""One batch (`MolBatch`) and how it travels: tensors gathered straight from packed rows (`to_batch`),
sent from a loader worker as ONE uint8 buffer plus a layout (one shared-memory segment instead of one
per tensor), pinned and copied to the device as that one buffer, and viewed back into the graph,
embeddings, masks and online-teacher inputs. Imports torch and PyG only."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, Optional

import numpy as np

from acml_dist.data.packed import Packed


class MolBatch:
    """One batch: `graph` (PyG Batch), `embeddings` {teacher: Tensor (B, D)} in the cache's dtype (float16,
    or uint8 0/1 for fingerprints; callers convert with `.to(dtype)`), `masks` {teacher: BoolTensor (B,)};
    `keys`, `smiles`, `meta`, `images` decoded on first access from `text`. Bit-packed fingerprints travel
    packed (B, D / 8) from the loader worker to the device and are unpacked on first access of
    `embeddings` (after `to(device)`: on the device)."""

    def __init__(
        self,
        graph: Any,
        text: Packed,
        embeddings: Optional[dict[str, Any]] = None,
        masks: Optional[dict[str, Any]] = None,
        packed: Optional[dict[str, int]] = None,
    ) -> None:
        self.graph, self.text = graph, text
        self._embeddings = dict(embeddings or {})
        self.masks = dict(masks or {})
        self.packed = dict(packed or {})  # teacher -> dim, for embeddings still bit-packed
        self.inputs: dict[str, tuple[Any, ...]] = {}  # online teacher -> model inputs (make_loader(inputs=))
        self._flat: Any = None  # the one buffer all tensors are views of, after a worker sent the batch
        self._layout: list = []

    @property
    def embeddings(self) -> dict[str, Any]:
        for name, dim in list(self.packed.items()):
            self._embeddings[name] = unpack_bits(self._embeddings[name], dim)
            del self.packed[name]
            self._flat = None  # no longer one buffer
        return self._embeddings

    def __len__(self) -> int:
        return self.text.n

    @cached_property
    def keys(self) -> list[str]:
        return self.text.texts("key")

    @cached_property
    def smiles(self) -> list[str]:
        return self.text.texts("smiles.txt")

    @cached_property
    def meta(self) -> list[dict]:
        return [json.loads(m) for m in self.text.texts("meta.json")]

    @cached_property
    def images(self) -> Optional[list[Optional[bytes]]]:
        if "image.png" not in self.text.blobs:
            return None
        return [self.text.blob("image.png", i) for i in range(self.text.n)]

    def to(self, device: Any, non_blocking: bool = False) -> MolBatch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> MolBatch:
        return self._map(lambda t: t.pin_memory())

    def _tensors(self) -> dict[str, Any]:
        out = {f"g:{k}": v for k, v in self.graph.to_dict().items()}
        out.update({f"e:{k}": v for k, v in self._embeddings.items()})
        out.update({f"m:{k}": v for k, v in self.masks.items()})
        out.update({f"i:{i}:{k}": v for k, vs in self.inputs.items() for i, v in enumerate(vs)})
        return out

    def _set_tensors(self, tensors: dict[str, Any]) -> None:
        from torch_geometric.data import Batch

        n = self.text.n
        self.graph = Batch(**{k[2:]: v for k, v in tensors.items() if k.startswith("g:")})
        self.graph._num_graphs = n
        self._embeddings = {k[2:]: v for k, v in tensors.items() if k.startswith("e:")}
        self.masks = {k[2:]: v for k, v in tensors.items() if k.startswith("m:")}
        inputs: dict[str, list] = {}
        for k, v in tensors.items():
            if k.startswith("i:"):
                inputs.setdefault(k.split(":", 2)[2], []).append(v)  # in order: i:<position>:<name>
        self.inputs = {k: tuple(v) for k, v in inputs.items()}

    def _map(self, fn: Any) -> MolBatch:
        """Every tensor through `fn` as ONE buffer (one pinned copy, one device copy) where the batch is
        still one flat buffer (as it arrives from a loader worker), else tensor by tensor."""
        tensors = self._tensors()
        views = _unflatten(self._flat, self._layout) if self._flat is not None else {}
        # the buffer stands for the batch only while no tensor was added or replaced since it arrived
        if views and tensors.keys() == views.keys() and all(_same(tensors[k], v) for k, v in views.items()):
            self._flat = fn(self._flat)
            self._set_tensors(_unflatten(self._flat, self._layout))
        else:
            self._flat = None
            self._set_tensors({k: fn(v) for k, v in tensors.items()})
        return self

    def __reduce__(self) -> tuple:
        # Sent from a loader worker as one uint8 tensor (one shared-memory segment, one file descriptor)
        # and a layout: ~10 tensors sent one by one cost the receiving process more than the batch did.
        flat, layout = _flatten(self._tensors())
        return (_rebuild, (flat, layout, self.text, self.packed))


_ALIGN = 64


def _flatten(tensors: dict[str, Any]) -> tuple[Any, list[tuple[str, Any, tuple[int, ...], int]]]:
    import torch

    layout, off = [], 0
    for k, v in tensors.items():
        layout.append((k, v.dtype, tuple(v.shape), off))
        off += -(-v.numel() * v.element_size() // _ALIGN) * _ALIGN
    flat = torch.empty(off, dtype=torch.uint8)
    for (_, _, _, o), v in zip(layout, tensors.values()):
        nbytes = v.numel() * v.element_size()
        flat[o : o + nbytes] = v.contiguous().view(-1).view(torch.uint8)
    return flat, layout


def _same(a: Any, b: Any) -> bool:
    """Two tensors viewing the same bytes in the same way."""
    return a.data_ptr() == b.data_ptr() and a.dtype == b.dtype and a.shape == b.shape


def _unflatten(flat: Any, layout: list) -> dict[str, Any]:
    import torch

    out = {}
    for k, dtype, shape, o in layout:
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
        out[k] = flat[o : o + nbytes].view(dtype).view(shape)
    return out


def _rebuild(flat: Any, layout: list, text: Packed, packed: dict[str, int]) -> MolBatch:
    batch = MolBatch(None, text, packed=packed)
    batch._flat, batch._layout = flat, layout
    batch._set_tensors(_unflatten(flat, layout))
    return batch


def unpack_bits(x: Any, dim: int) -> Any:
    """(B, ceil(dim / 8)) uint8 packed bits (np.packbits order) -> (B, dim) uint8 0/1, on x's device."""
    import torch

    if x.device.type == "cpu":  # numpy's unpackbits: ~100x faster than the shifts below on a CPU
        return torch.from_numpy(np.unpackbits(x.numpy(), axis=1, count=dim))
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=x.device)
    return ((x.unsqueeze(-1) >> shifts) & 1).reshape(x.shape[0], -1)[:, :dim]


def graph_from_npz(arrays: dict[str, np.ndarray], schema: str = "hu"):
    """PyG Data (x long (N, 2|9), edge_index long (2, E), edge_attr long (E, 2|3)) from one molecule's
    arrays (`chem.featurize.mol_to_graph`): serving and single molecules, not the training path."""
    import torch
    from torch_geometric.data import Data

    if schema not in ("hu", "ogb"):
        raise ValueError(f"unknown graph schema {schema!r} (hu | ogb)")
    return Data(
        x=torch.from_numpy(arrays[f"{schema}_x"].astype(np.int64)),
        edge_index=torch.from_numpy(arrays["edge_index"].astype(np.int64)),
        edge_attr=torch.from_numpy(arrays[f"{schema}_edge_attr"].astype(np.int64)),
    )


def to_batch(rows: Packed, schema: str, dims: dict[str, int]) -> MolBatch:
    """The MolBatch of packed rows: tensors straight from the arrays (what Batch.from_data_list gives)."""
    import torch
    from torch_geometric.data import Batch

    graph = Batch(**rows.graph_tensors(schema))
    graph._num_graphs = rows.n
    embeddings, masks, packed = {}, {}, {}
    for t, dim in dims.items():
        matrix = rows.rows[f"emb:{t}"]
        embeddings[t] = torch.from_numpy(matrix if matrix.flags.writeable else matrix.copy())
        masks[t] = torch.from_numpy(rows.rows[f"present:{t}"].copy())
        if matrix.dtype == np.uint8:
            packed[t] = dim
    text = Packed(rows.n, rows.atom_ptr, rows.edge_ptr, rows={k: v for k, v in rows.rows.items() if "@" in k})
    text.blobs = rows.blobs
    return MolBatch(graph, text, embeddings, masks, packed)
