"""Packed rows: many molecules' graph arrays concatenated, with per-molecule offsets, plus aligned columns.

One `Packed` is a shard, a pool of shards in the loader, or a batch. Every operation is a handful of numpy
calls for the whole set of rows (no per-molecule Python object): `take(rows)` gathers rows (graph arrays
through their offsets), `concat(parts)` appends, `graph_tensors(schema)` gives the tensors the model reads.

Columns:
- graph: `atom_ptr`, `edge_ptr` (n + 1 offsets); per atom `hu_x` (N, 2) uint8, `ogb_x` (N, 9) uint8; per
  edge `edge_index` (E, 2) with atom indices local to the molecule (int16 on disk, int32 for a shard with
  a molecule over 32,767 atoms), `hu_edge_attr` (E, 2) uint8,
  `ogb_edge_attr` (E, 3) uint8;
- `rows`: one row per molecule (embedding matrices (n, dim), presence masks (n,), ...);
- `blobs`: variable-length bytes per molecule as (data uint8, ptr (n + 1)) and an optional presence mask
  in `rows["<name>@present"]`: "key", "smiles.txt", "meta.json", "image.png", later modalities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ATOM_ARRAYS = ("hu_x", "ogb_x")
EDGE_ARRAYS = ("edge_index", "hu_edge_attr", "ogb_edge_attr")
GRAPH_WIDTH = {"hu_x": 2, "ogb_x": 9, "edge_index": 2, "hu_edge_attr": 2, "ogb_edge_attr": 3}


def _ranges(ptr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the elements of rows `idx` in a concatenated array with offsets `ptr`, and the new
    offsets: one `repeat` + one `arange`, whatever the number of rows."""
    starts = ptr[idx]
    counts = ptr[idx + 1] - starts
    new_ptr = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_ptr[1:])
    pos = np.arange(new_ptr[-1], dtype=np.int64) + np.repeat(starts - new_ptr[:-1], counts)
    return pos, new_ptr


def _take_rows(arr: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """arr[pos] for a 2-D array, gathering whole rows as one 1-D item where the row is 1, 2, 4 or 8 bytes
    (np.take on (N,) uint16 or int64 is several times faster than fancy indexing (N, 2) uint8 / int32)."""
    row = arr.dtype.itemsize * (arr.shape[1] if arr.ndim == 2 else 1)
    if arr.ndim == 2 and row in (1, 2, 4, 8) and arr.flags.c_contiguous:
        flat = arr.view(f"u{row}").reshape(-1)
        return np.take(flat, pos).view(arr.dtype).reshape(len(pos), arr.shape[1])
    return np.take(arr, pos, axis=0)


def _cat_ptr(ptrs: Sequence[np.ndarray]) -> np.ndarray:
    out, base = [np.zeros(1, np.int64)], 0
    for p in ptrs:
        out.append(p[1:].astype(np.int64) + base)
        base += int(p[-1])
    return np.concatenate(out)


@dataclass
class Packed:
    n: int
    atom_ptr: np.ndarray
    edge_ptr: np.ndarray
    atoms: dict[str, np.ndarray] = field(default_factory=dict)
    edges: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.n

    # ------------------------------------------------------------------ building
    @classmethod
    def from_graphs(cls, graphs: Sequence[dict[str, np.ndarray]], blobs: dict[str, Sequence[bytes | None]]):
        """From per-molecule graph dicts (what `chem.featurize.mol_to_graph` returns; edge_index (2, E))
        and bytes columns (None = absent, recorded in `<name>@present`). Used when writing shards."""
        n = len(graphs)
        atom_ptr = np.zeros(n + 1, np.int64)
        edge_ptr = np.zeros(n + 1, np.int64)
        atom_ptr[1:] = np.cumsum([len(g["hu_x"]) for g in graphs])
        edge_ptr[1:] = np.cumsum([g["edge_index"].shape[1] for g in graphs])

        def cat(name: str, transpose: bool = False) -> np.ndarray:
            dtype = np.int32 if name == "edge_index" else np.uint8
            parts = [(g[name].T if transpose else g[name]).astype(dtype, copy=False) for g in graphs]
            return np.concatenate(parts) if parts else np.zeros((0, GRAPH_WIDTH[name]), dtype)

        out = cls(n, atom_ptr, edge_ptr)
        out.atoms = {k: cat(k) for k in ATOM_ARRAYS}
        out.edges = {k: cat(k, transpose=k == "edge_index") for k in EDGE_ARRAYS}
        for name, values in blobs.items():
            present = np.array([v is not None for v in values], dtype=bool)
            data = [v or b"" for v in values]
            ptr = np.zeros(n + 1, np.int64)
            ptr[1:] = np.cumsum([len(v) for v in data])
            out.blobs[name] = (np.frombuffer(b"".join(data), np.uint8).copy(), ptr)
            if name not in ("key", "smiles.txt", "meta.json"):
                out.rows[f"{name}@present"] = present
        return out

    # ------------------------------------------------------------------ row operations
    def take(self, idx: np.ndarray) -> Packed:
        """The rows `idx` (any order, repeats allowed) as a new Packed."""
        idx = np.asarray(idx, dtype=np.int64)
        apos, atom_ptr = _ranges(self.atom_ptr, idx)
        epos, edge_ptr = _ranges(self.edge_ptr, idx)
        blobs = {}
        for name, (data, ptr) in self.blobs.items():
            bpos, bptr = _ranges(ptr, idx)
            blobs[name] = (np.take(data, bpos), bptr)
        return Packed(
            len(idx),
            atom_ptr,
            edge_ptr,
            {k: _take_rows(v, apos) for k, v in self.atoms.items()},
            {k: _take_rows(v, epos) for k, v in self.edges.items()},
            {k: np.take(v, idx, axis=0) for k, v in self.rows.items()},
            blobs,
        )

    def slice(self, a: int, b: int) -> Packed:
        """Rows a..b-1 (contiguous: views where numpy allows)."""
        a0, a1, e0, e1 = self.atom_ptr[a], self.atom_ptr[b], self.edge_ptr[a], self.edge_ptr[b]
        blobs = {}
        for name, (data, ptr) in self.blobs.items():
            blobs[name] = (data[ptr[a] : ptr[b]], ptr[a : b + 1] - ptr[a])
        return Packed(
            b - a,
            self.atom_ptr[a : b + 1] - a0,
            self.edge_ptr[a : b + 1] - e0,
            {k: v[a0:a1] for k, v in self.atoms.items()},
            {k: v[e0:e1] for k, v in self.edges.items()},
            {k: v[a:b] for k, v in self.rows.items()},
            blobs,
        )

    def only(self, atoms: Sequence[str], edges: Sequence[str], rows: Sequence[str], blobs: Sequence[str]):
        """A view holding only the named columns (what a loader needs)."""
        return Packed(
            self.n,
            self.atom_ptr,
            self.edge_ptr,
            {k: self.atoms[k] for k in atoms},
            {k: self.edges[k] for k in edges},
            {k: self.rows[k] for k in rows if k in self.rows},
            {k: self.blobs[k] for k in blobs if k in self.blobs},
        )

    # ------------------------------------------------------------------ per-row access (not the hot path)
    def blob(self, name: str, i: int) -> bytes | None:
        if name not in self.blobs:
            return None
        present = self.rows.get(f"{name}@present")
        if present is not None and not present[i]:
            return None
        data, ptr = self.blobs[name]
        return data[ptr[i] : ptr[i + 1]].tobytes()

    def texts(self, name: str) -> list[str]:
        data, ptr = self.blobs[name]
        raw = data.tobytes()
        return [raw[ptr[i] : ptr[i + 1]].decode("utf-8") for i in range(self.n)]

    def graph(self, i: int) -> dict[str, np.ndarray]:
        """One molecule's arrays as `mol_to_graph` returns them (edge_index (2, E) int32)."""
        a0, a1, e0, e1 = self.atom_ptr[i], self.atom_ptr[i + 1], self.edge_ptr[i], self.edge_ptr[i + 1]
        out = {k: v[a0:a1] for k, v in self.atoms.items()}
        out.update({k: v[e0:e1] for k, v in self.edges.items()})
        if "edge_index" in out:
            out["edge_index"] = np.ascontiguousarray(out["edge_index"].T.astype(np.int32))
        return out

    # ------------------------------------------------------------------ to the model
    def graph_tensors(self, schema: str = "hu") -> dict[str, Any]:
        """x long (N, 2|9), edge_index long (2, E) (global atom indices), edge_attr long (E, 2|3),
        batch long (N,), ptr long (n + 1,): what `torch_geometric.data.Batch.from_data_list` gives."""
        import torch

        if schema not in ("hu", "ogb"):
            raise ValueError(f"unknown graph schema {schema!r} (hu | ogb)")
        atom_counts = np.diff(self.atom_ptr)
        shift = np.repeat(self.atom_ptr[:-1], np.diff(self.edge_ptr))
        ei = self.edges["edge_index"].astype(np.int64)
        ei += shift[:, None]
        return {
            "x": torch.from_numpy(self.atoms[f"{schema}_x"].astype(np.int64)),
            "edge_index": torch.from_numpy(np.ascontiguousarray(ei.T)),
            "edge_attr": torch.from_numpy(self.edges[f"{schema}_edge_attr"].astype(np.int64)),
            "batch": torch.from_numpy(np.repeat(np.arange(self.n, dtype=np.int64), atom_counts)),
            "ptr": torch.from_numpy(self.atom_ptr.astype(np.int64)),
        }


def concat(parts: Sequence[Packed]) -> Packed:
    """Rows of every part, in order (all parts hold the same columns)."""
    parts = [p for p in parts if p.n] or list(parts[:1])
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Packed(
        sum(p.n for p in parts),
        _cat_ptr([p.atom_ptr for p in parts]),
        _cat_ptr([p.edge_ptr for p in parts]),
        {k: np.concatenate([p.atoms[k] for p in parts]) for k in first.atoms},
        {k: np.concatenate([p.edges[k] for p in parts]) for k in first.edges},
        {k: np.concatenate([p.rows[k] for p in parts]) for k in first.rows},
        {
            k: (np.concatenate([p.blobs[k][0] for p in parts]), _cat_ptr([p.blobs[k][1] for p in parts]))
            for k in first.blobs
        },
    )


def to_arrays(p: Packed) -> dict[str, np.ndarray]:
    """The npz members of a packed shard (offsets int64, graph arrays as stored)."""
    out: dict[str, np.ndarray] = {
        "atom_ptr": p.atom_ptr.astype(np.int64),
        "edge_ptr": p.edge_ptr.astype(np.int64),
    }
    out.update(p.atoms)
    out.update(p.edges)
    ei = p.edges.get("edge_index")
    if ei is not None and (not ei.size or int(ei.max()) < 2**15):  # local indices: int16 unless a molecule
        out["edge_index"] = ei.astype(np.int16)  # has more than 32,767 atoms
    elif ei is not None:
        out["edge_index"] = ei.astype(np.int32)
    out.update(p.rows)
    for name, (data, ptr) in p.blobs.items():
        out[f"{name}@data"] = data
        out[f"{name}@ptr"] = ptr.astype(np.int64)
    return out


def from_arrays(arrays: dict[str, np.ndarray]) -> Packed:
    """Inverse of `to_arrays` (raises KeyError on a missing member)."""
    atom_ptr, edge_ptr = arrays["atom_ptr"], arrays["edge_ptr"]
    out = Packed(len(atom_ptr) - 1, atom_ptr, edge_ptr)
    for name, value in arrays.items():
        if name in ATOM_ARRAYS:
            out.atoms[name] = value
        elif name in EDGE_ARRAYS:
            out.edges[name] = value
        elif name.endswith("@data"):
            base = name[: -len("@data")]
            out.blobs[base] = (value, arrays[f"{base}@ptr"])
        elif name not in ("atom_ptr", "edge_ptr") and not name.endswith("@ptr"):
            out.rows[name] = value
    return out
