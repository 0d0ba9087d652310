"""Read side: WebDataset pipelines over the graph shards, joined in lock step with embedding-cache shards.

Nothing is unpickled from a shard: npz with allow_pickle=False, UTF-8 text, JSON, PNG bytes.
`make_loader` gives every rank the same number of batches: one pass over all samples when a single rank
reads without a budget (evaluation), otherwise exactly `batches_per_epoch` (default: floor(samples /
(world_size * batch_size))) batches per rank from the rank's share of the shards, repeated if needed."""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Optional

import numpy as np

from acml_dist.data.shards import decode_npz, read_manifest, shard_paths
from acml_dist.errors import DataError, InputError


class ShardMismatch(InputError, RuntimeError):
    """Embedding-cache shard out of step with its graph shard, or cache built by other weights."""


@dataclass
class MolBatch:
    graph: Any  # torch_geometric.data.Batch
    keys: list[str]
    smiles: list[str]
    meta: list[dict]
    embeddings: dict[str, Any] = field(default_factory=dict)  # name -> Tensor (B, D) float32
    masks: dict[str, Any] = field(default_factory=dict)  # name -> BoolTensor (B,)
    images: Optional[list[Optional[bytes]]] = None

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: Any) -> MolBatch:
        self.graph = self.graph.to(device)
        self.embeddings = {k: v.to(device) for k, v in self.embeddings.items()}
        self.masks = {k: v.to(device) for k, v in self.masks.items()}
        return self


def graph_from_npz(arrays: dict[str, np.ndarray], schema: str = "hu"):
    """PyG Data (x long (N, 2|9), edge_index long (2, E), edge_attr long (E, 2|3)) from graph.npz arrays."""
    import torch
    from torch_geometric.data import Data

    if schema not in ("hu", "ogb"):
        raise ValueError(f"unknown graph schema {schema!r} (hu | ogb)")
    return Data(
        x=torch.from_numpy(arrays[f"{schema}_x"].astype(np.int64)),
        edge_index=torch.from_numpy(arrays["edge_index"].astype(np.int64)),
        edge_attr=torch.from_numpy(arrays[f"{schema}_edge_attr"].astype(np.int64)),
    )


def count_samples(root: str | Path, split: str) -> int:
    manifest = read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no manifest.json in {root}")
    return int(manifest["splits"][split]["samples"])


def tar_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """Raw samples of one tar in order: {"__key__": key, "<ext>": bytes}. Keys split at the first '.'."""
    current: dict[str, Any] = {}
    with tarfile.open(path, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition("/")[2].partition(".")
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            fh = tar.extractfile(member)
            current[ext] = fh.read() if fh else b""
    if current:
        yield current


def teacher_manifest(root: str | Path, name: str, expected_hash: Optional[str] = None) -> dict[str, Any]:
    path = Path(root) / "embeddings" / name / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no embedding cache for teacher {name!r} at {path}: run `acml embed` first")
    manifest = json.loads(path.read_text())
    if expected_hash is not None and manifest.get("weights_hash") != expected_hash:
        raise ShardMismatch(
            f"embedding cache {path} was built with weights {manifest.get('weights_hash')}, "
            f"expected {expected_hash}: re-run `acml embed ... overwrite=true`"
        )
    return manifest


def _joined(graph_path: str, teachers: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Samples of one graph shard with each teacher's embedding sample of the same key attached."""
    shard = Path(graph_path)
    root, split = shard.parents[1], shard.parent.name
    emb_iters = {t: tar_samples(root / "embeddings" / t / split / shard.name) for t in teachers}
    for sample in tar_samples(shard):
        for t, it in emb_iters.items():
            emb = next(it, None)
            if emb is None or emb["__key__"] != sample["__key__"]:
                got = None if emb is None else emb["__key__"]
                raise ShardMismatch(
                    f"embedding shard embeddings/{t}/{split}/{shard.name} out of step with "
                    f"{split}/{shard.name}: expected key {sample['__key__']!r}, got {got!r}"
                )
            sample[f"emb:{t}"] = emb
        yield sample
    for t, it in emb_iters.items():
        if next(it, None) is not None:
            raise ShardMismatch(
                f"embedding shard embeddings/{t}/{split}/{shard.name} has more samples than "
                f"{split}/{shard.name}"
            )


def decode_sample(raw: dict[str, Any]) -> dict[str, Any]:
    """Decoded sample: key, smiles, meta, arrays (graph.npz), image (PNG bytes or None), embeddings
    ({teacher: float32 array or None when missing}) and any other member as raw bytes."""
    out: dict[str, Any] = {"key": raw["__key__"], "embeddings": {}, "extra": {}}
    for name, value in raw.items():
        if name == "__key__":
            continue
        if name == "graph.npz":
            out["arrays"] = decode_npz(value)
        elif name == "smiles.txt":
            out["smiles"] = value.decode("utf-8")
        elif name == "meta.json":
            out["meta"] = json.loads(value)
        elif name == "image.png":
            out["image"] = value
        elif name.startswith("emb:"):
            emb = value.get("emb.npy")
            out["embeddings"][name[4:]] = (
                None if emb is None else np.load(io.BytesIO(emb), allow_pickle=False).astype(np.float32)
            )
        elif name.endswith(".npy"):
            out["extra"][name] = np.load(io.BytesIO(value), allow_pickle=False)
        else:
            out["extra"][name] = value
    out.setdefault("image", None)
    return out


def iter_samples(root: str | Path, split: str, teachers: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Every sample of a split in shard order, decoded (see `decode_sample`)."""
    for path in shard_paths(root, split):
        for raw in _joined(path, teachers):
            yield decode_sample(raw)


def collate(
    samples: list[dict[str, Any]], schema: str, teachers: Sequence[str], dims: dict[str, int]
) -> MolBatch:
    import torch
    from torch_geometric.data import Batch

    graph = Batch.from_data_list([graph_from_npz(s["arrays"], schema) for s in samples])
    embeddings, masks = {}, {}
    for t in teachers:
        values = [s["embeddings"].get(t) for s in samples]
        emb = torch.zeros(len(samples), dims[t], dtype=torch.float32)
        mask = torch.zeros(len(samples), dtype=torch.bool)
        for i, v in enumerate(values):
            if v is not None:
                emb[i] = torch.from_numpy(v)
                mask[i] = True
        embeddings[t], masks[t] = emb, mask
    images = [s["image"] for s in samples] if any(s["image"] is not None for s in samples) else None
    return MolBatch(
        graph,
        [s["key"] for s in samples],
        [s["smiles"] for s in samples],
        [s["meta"] for s in samples],
        embeddings,
        masks,
        images,
    )


def make_loader(
    root: str | Path,
    split: str,
    batch_size: int,
    *,
    schema: str = "hu",
    teachers: Sequence[str] = (),
    rank: int = 0,
    world_size: int = 1,
    resampled: bool = False,
    batches_per_epoch: Optional[int] = None,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    epoch: int = 0,
    teacher_hashes: Optional[dict[str, str]] = None,
    shuffle_buffer: int = 1000,
) -> Iterable[MolBatch]:
    """Batches of one rank (see the module docstring). `teacher_hashes`: expected weights_hash per teacher;
    a cache built by other weights is refused."""
    import webdataset as wds

    teachers = list(teachers)
    urls = shard_paths(root, split)
    if not urls:
        raise DataError(f"{root}: split {split!r} has no shards")
    dims = {t: int(teacher_manifest(root, t, (teacher_hashes or {}).get(t))["dim"]) for t in teachers}
    total = count_samples(root, split)
    finite = world_size == 1 and not resampled and batches_per_epoch is None
    budget = batches_per_epoch
    if budget is None and not finite:
        budget = total // (world_size * batch_size)
        if budget == 0:
            raise DataError(
                f"{split}: {total} samples cannot give {world_size} ranks a batch of {batch_size}"
            )
    by_shard = (
        len(urls) >= world_size
    )  # else every rank reads every shard and keeps every world_size-th sample

    def shard_source() -> Iterator[dict[str, str]]:
        round_ = 0
        while True:
            order = list(urls)
            if shuffle:
                random.Random(seed + 7919 * (epoch + round_)).shuffle(order)
            mine = order[rank::world_size] if by_shard else order
            yield from ({"url": u} for u in mine)
            if finite:
                return
            round_ += 1

    def expand(src: Iterator[dict[str, str]]) -> Iterator[dict[str, Any]]:
        for item in src:
            samples = _joined(item["url"], teachers)
            if not by_shard and not resampled:
                samples = islice(samples, rank, None, world_size)
            yield from samples

    source = (
        wds.ResampledShards(urls, seed=seed + 1000 * rank + epoch, deterministic=True)
        if resampled
        else shard_source
    )
    stages: list[Any] = [source, wds.split_by_worker, expand]
    if shuffle:
        stages.append(
            wds.shuffle(shuffle_buffer, initial=min(100, shuffle_buffer), seed=seed + epoch + 1000 * rank)
        )
    stages += [
        wds.map(decode_sample),
        wds.batched(batch_size, collation_fn=lambda s: collate(s, schema, teachers, dims), partial=finite),
    ]
    pipeline = wds.DataPipeline(*stages)
    loader: Iterable[MolBatch] = pipeline
    if num_workers > 0:
        loader = wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers)
    if finite:
        return loader
    return _Budgeted(loader, int(budget))


class _Budgeted:
    """Exactly `n` batches per iteration (the stream underneath repeats), the same on every rank."""

    def __init__(self, loader: Iterable[MolBatch], n: int) -> None:
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[MolBatch]:
        return islice(iter(self.loader), self.n)
