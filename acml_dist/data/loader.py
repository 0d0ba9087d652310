"""Read side: batches sliced out of packed shards (`acml_dist.data.packed`), joined with embedding caches.

A reader (one per rank and loader worker) loads a shard, checks it against the manifest (sha256, rows;
each cache's sha256, rows, graph shard and keys: `acml_dist.data.shards`), pools `buffer_shards` shards,
permutes the pool's rows when shuffling, and gathers each batch with a few numpy calls: no per-molecule
Python object. Shard order is shuffled per epoch; rows left over at the end of a pool go into the next one.
`make_loader` gives every rank the same number of batches: one pass over all rows when a single rank reads
without a budget (evaluation), otherwise exactly `batches_per_epoch` (default: floor(rows / (world_size *
batch_size))) batches per rank, the stream repeating if needed. Worker processes live across epochs
(`set_epoch`). `modality_batches` groups each pool's rows by which teachers' modalities they have (the
rarest modality contiguous, random within a group), then shuffles the order of the batches: a sparse
modality (13C for 5% of molecules) meets its in-batch contrast with ~a batch of negatives instead of a
handful, as when the authors trained one modality at a time; every row is still read once per pass.
`isomer_batches` also groups rows by heavy-atom composition (within each modality group): isomers in one
pool meet in one batch, so the contrast is between molecules a formula cannot tell apart (hard negatives).
`taught_only` drops the rows that none of the cached teachers has an embedding for: in a run whose every
teacher is sparse (13C alone, on the quarter of molecules with a spectrum) such a row gives no loss term, and
a batch of them would be an optimiser step on nothing (AdamW's moments and weight decay still move the
weights). Training uses it unless a teacher runs online (online teachers cover every molecule).
Imports torch and PyG only (no Ray, MLflow or RDKit)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Optional

import numpy as np

from acml_dist.data.batch import MolBatch, graph_from_npz, to_batch
from acml_dist.data.packed import Packed, concat
from acml_dist.data.shards import (
    ShardError,
    ShardMismatch,
    cache_entries,
    cache_manifest,
    count_samples,
    count_taught,
    load_cache_shard,
    load_graph_shard,
    split_entries,
    unpack_rows,
)
from acml_dist.errors import DataError
from acml_dist.log import get_logger

__all__ = ["MolBatch", "ShardMismatch", "count_samples", "graph_from_npz", "iter_samples", "make_loader"]
log = get_logger("loader")
TEXT = ("key", "smiles.txt", "meta.json", "image.png")


class ShardStream:
    """The batches of one reader (a rank, or one loader worker of a rank); see the module docstring."""

    def __init__(self, root: str | Path, split: str, batch_size: int, *, schema: str,
                 teachers: dict[str, int], rank: int, world_size: int, shuffle: bool, seed: int,
                 finite: bool, buffer_shards: int, on_bad_shard: str, text: Sequence[str],
                 inputs: Optional[dict[str, Callable]] = None, modality_batches: bool = False,
                 isomer_batches: bool = False, taught_only: bool = False) -> None:  # fmt: skip
        if on_bad_shard not in ("error", "skip"):
            raise DataError(f"on_bad_shard={on_bad_shard!r}: expected error | skip")
        self.root, self.split, self.batch_size = Path(root), split, batch_size
        self.schema, self.dims, self.rank, self.world = schema, dict(teachers), rank, world_size
        self.shuffle, self.seed, self.finite, self.buffer = shuffle, seed, finite, max(1, buffer_shards)
        self.on_bad_shard, self.text = on_bad_shard, tuple(text)
        self.modality_batches, self.isomer_batches = modality_batches, isomer_batches
        self.taught_only = taught_only and bool(self.dims)
        self.inputs = dict(inputs or {})
        if self.inputs and "smiles.txt" not in self.text:
            raise ValueError("make_loader(inputs=...) reads SMILES: text must include 'smiles.txt'")
        self.entries = split_entries(root, split)
        self.caches = {t: cache_entries(cache_manifest(root, t), split) for t in self.dims}
        self.epoch = multiprocessing.Value("i", 0)  # shared with forked workers that live across epochs
        # one flag per shard, in shared memory: a shard skipped by any loader worker of this rank, in any
        # epoch, is seen (once) by the process that owns the loader
        self.bad = multiprocessing.RawArray("b", len(self.entries))
        self.index = {e["name"]: i for i, e in enumerate(self.entries)}

    @property
    def skipped(self) -> list[str]:
        """Names of the shards skipped under on_bad_shard=skip by this reader or its workers, in manifest
        order, each once."""
        return [e["name"] for e, bad in zip(self.entries, self.bad) if bad]

    def load(self, entry: dict[str, Any]) -> Optional[Packed]:
        """A shard joined with its caches, only the columns batches need; None when skipped (lenient)."""
        try:
            packed = load_graph_shard(self.root, entry)
            for t in self.dims:
                centry = self.caches[t].get(entry["name"])
                if centry is None:
                    raise ShardMismatch(
                        f"embedding cache of {t!r} has no shard {entry['name']}: re-run acml embed"
                    )
                matrix, present = load_cache_shard(self.root, t, centry, entry, packed.blobs["key"])
                packed.rows[f"emb:{t}"], packed.rows[f"present:{t}"] = matrix, present
        except ShardError as exc:
            if self.on_bad_shard == "error":
                raise
            self.bad[self.index[entry["name"]]] = 1
            log.warning("skipped (on_bad_shard=skip, %d shards so far): %s", sum(self.bad), exc)
            return None
        if self.taught_only:
            taught = np.logical_or.reduce([packed.rows[f"present:{t}"].astype(bool) for t in self.dims])
            if not taught.all():
                packed = packed.take(np.flatnonzero(taught))
        rows = [f"emb:{t}" for t in self.dims] + [f"present:{t}" for t in self.dims]
        rows += [f"{c}@present" for c in self.text]
        return packed.only([f"{self.schema}_x"], ["edge_index", f"{self.schema}_edge_attr"], rows, self.text)

    def batch(self, rows: Packed) -> MolBatch:
        batch = to_batch(rows, self.schema, self.dims)
        if self.inputs:  # model inputs of online teachers (tokens), made here: in the worker process
            batch.inputs = {name: tuple(fn(batch.smiles)) for name, fn in self.inputs.items()}
        return batch

    def order(self, pool: Packed, rng: np.random.Generator) -> np.ndarray:
        """The shuffled order of a pool's rows; under `modality_batches` / `isomer_batches`, grouped (module
        docstring)."""
        perm = rng.permutation(pool.n)
        keys = []  # np.lexsort: the last key is the primary one
        if self.isomer_batches:
            groups = composition_groups(pool, self.schema, rng)
            if int(groups.max()) + 1 < pool.n:  # some composition is shared
                keys.append(groups[perm])
        if self.modality_batches and self.dims:
            signature = modality_signature(pool, self.dims)
            if signature.min() != signature.max():
                keys.append(-signature[perm])
        return grouped_order(perm, keys, self.batch_size, rng) if keys else perm  # no keys: all alike

    def __iter__(self) -> Iterator[MolBatch]:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        reader, readers = self.rank * nw + wid, self.world * nw
        epoch, round_ = int(self.epoch.value), 0
        carry: list[Packed] = []
        while True:
            order = list(self.entries)
            if self.shuffle:
                np.random.default_rng([self.seed, epoch, round_]).shuffle(order)
            # fewer shards than readers: every reader reads every shard and keeps rows reader::readers
            by_shard = len(order) >= readers
            mine = order[reader::readers] if by_shard else order
            rng = np.random.default_rng([self.seed, epoch, round_, reader, 1])
            produced = False
            for g in range(0, len(mine), self.buffer):
                loaded = [p for p in (self.load(e) for e in mine[g : g + self.buffer]) if p is not None]
                if not by_shard:
                    loaded = [p.take(np.arange(reader, p.n, readers)) for p in loaded]
                pool = concat(carry + loaded) if carry + loaded else None
                if pool is None or pool.n == 0:
                    continue
                order_rows = self.order(pool, rng) if self.shuffle else None
                full = pool.n // self.batch_size * self.batch_size
                for a in range(0, full, self.batch_size):
                    rows = (
                        pool.slice(a, a + self.batch_size)
                        if order_rows is None
                        else pool.take(order_rows[a : a + self.batch_size])
                    )
                    produced = True
                    yield self.batch(rows)
                rest = np.arange(full, pool.n) if order_rows is None else order_rows[full:]
                carry = [pool.take(rest)] if len(rest) else []
            if self.finite:
                if carry:
                    yield self.batch(carry[0])
                return
            if not produced and not carry:
                raise ShardError(f"{self.root}/{self.split}: no usable rows for reader {reader} of {readers}")
            round_ += 1


def grouped_order(perm: np.ndarray, keys: Sequence[np.ndarray], batch_size: int,
                  rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """A shuffled row order `perm` sorted stably by `keys` (each aligned with `perm`; the last is the primary
    one, as np.lexsort), so rows sharing keys stay contiguous in random order, then its whole batches of
    `batch_size` put in random order (the last partial batch stays last). Shared by the loader's grouped
    batches and the teachers' (`training/pair_training.fit_pairs`)."""
    perm = perm[np.lexsort(list(keys))]  # stable: random within a group
    full = len(perm) // batch_size
    head = perm[: full * batch_size].reshape(full, batch_size)[rng.permutation(full)]
    return np.concatenate([head.reshape(-1), perm[full * batch_size :]])


# one fixed 64-bit code per atomic-number index: a molecule's composition is the (wrapping) sum of its atoms'
_ELEMENT_CODE = np.random.default_rng(20231106).integers(1, 2**63, 256, dtype=np.uint64)


def composition_groups(pool: Packed, schema: str, rng: np.random.Generator) -> np.ndarray:
    """Per row, a random rank shared by the rows with the same heavy-atom composition (the element counts
    of the graph's atoms; hydrogens are not nodes): isomers, and molecules that differ only in hydrogens,
    share a group. Ranks are drawn afresh per pool, so groups land in random batches."""
    codes = _ELEMENT_CODE[pool.atoms[f"{schema}_x"][:, 0]]
    csum = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes, out=csum[1:])  # uint64 wraps: differences of the running sum are still exact sums
    composition = csum[pool.atom_ptr[1:]] - csum[pool.atom_ptr[:-1]]
    _, group = np.unique(composition, return_inverse=True)
    return rng.permutation(int(group.max()) + 1)[group.reshape(-1)]


def modality_signature(pool: Packed, dims: dict[str, int]) -> np.ndarray:
    """Per row, a bit per teacher whose modality it has; the rarest modality is the highest bit, so its
    rows sort contiguous whatever else they have."""
    present = {t: pool.rows[f"present:{t}"].astype(bool) for t in dims}
    rarest_last = sorted(present, key=lambda t: -int(present[t].sum()))
    signature = np.zeros(pool.n, dtype=np.int64)
    for bit, t in enumerate(rarest_last):
        signature |= present[t].astype(np.int64) << bit
    return signature


def _dataset(stream: ShardStream):
    import torch.utils.data

    class StreamDataset(torch.utils.data.IterableDataset):
        def __iter__(self) -> Iterator[MolBatch]:
            return iter(stream)

    return StreamDataset()


class Loader:
    """Batches of one rank; `set_epoch(e)` before iterating (workers persist across epochs)."""

    def __init__(
        self, stream: ShardStream, budget: Optional[int], num_workers: int, pin_memory: bool
    ) -> None:
        self.stream, self.budget = stream, budget
        self.dl: Optional[Iterable[MolBatch]] = None
        if num_workers > 0:
            import torch.multiprocessing
            import torch.utils.data

            # Batches cross from workers in shared memory named by file, not by a file descriptor sent
            # over a socket per tensor: the receiving side's cost per batch fell ~2x (BENCHMARKS.md).
            torch.multiprocessing.set_sharing_strategy("file_system")

            self.dl = torch.utils.data.DataLoader(
                _dataset(stream),
                batch_size=None,
                num_workers=num_workers,
                persistent_workers=not stream.finite,
                pin_memory=pin_memory,
                prefetch_factor=4,
                # its own generator: workers' seeds never draw from (and shift) the trainer's global RNG
                generator=torch.Generator().manual_seed(stream.seed),
            )
        self.pin = pin_memory and num_workers == 0

    def set_epoch(self, epoch: int) -> None:
        self.stream.epoch.value = int(epoch)

    def __len__(self) -> int:
        if self.budget is not None:
            return self.budget
        total = sum(e["samples"] for e in self.stream.entries)
        return -(-total // self.stream.batch_size)

    @property
    def skipped(self) -> list[str]:
        """Shards skipped under on_bad_shard=skip by this process or any of its worker processes, in
        manifest order, each once however many epochs met it."""
        return self.stream.skipped

    @property
    def shard_names(self) -> list[str]:
        """Every shard of the split, in manifest order (the same on every rank)."""
        return [e["name"] for e in self.stream.entries]

    def __iter__(self) -> Iterator[MolBatch]:
        it: Iterator[MolBatch] = iter(self.dl) if self.dl is not None else iter(self.stream)
        if self.pin:
            it = (b.pin_memory() for b in it)
        return islice(it, self.budget) if self.budget is not None else it


def make_loader(
    root: str | Path,
    split: str,
    batch_size: int,
    *,
    schema: str = "hu",
    teachers: Sequence[str] = (),
    rank: int = 0,
    world_size: int = 1,
    batches_per_epoch: Optional[int] = None,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    epoch: int = 0,
    teacher_hashes: Optional[dict[str, str]] = None,
    buffer_shards: int = 4,
    pin_memory: bool = False,
    on_bad_shard: str = "error",
    text: Sequence[str] = TEXT,
    inputs: Optional[dict[str, Callable[[list[str]], Any]]] = None,
    modality_batches: bool = False,
    isomer_batches: bool = False,
    taught_only: bool = False,
) -> Loader:
    """Batches of one rank (module docstring). `teacher_hashes`: expected weights_hash per teacher (a cache
    built by other weights is refused); `text`: the bytes columns batches carry (training needs "key" only);
    `on_bad_shard`: error (stop, naming the shard) | skip (log, go on; the names in `loader.skipped`, from
    every worker process); `inputs`: {online teacher: picklable SMILES -> tuple of tensors} run where the
    batch is made (a worker process), the results in `batch.inputs` (moved by `batch.to`);
    `modality_batches` / `isomer_batches`: group shuffled rows by the modalities they have / by their
    heavy-atom composition; `taught_only`: only rows some teacher has an embedding for, the epoch sized by
    them (module docstring)."""
    dims = {t: int(cache_manifest(root, t, (teacher_hashes or {}).get(t))["dim"]) for t in teachers}
    total = count_taught(root, split, list(dims) if taught_only else [])
    finite = world_size == 1 and batches_per_epoch is None
    budget = batches_per_epoch
    if budget is None and not finite:
        budget = total // (world_size * batch_size)
        if budget == 0:
            raise DataError(
                f"{split}: {total} samples cannot give {world_size} ranks a batch of {batch_size}"
            )
    stream = ShardStream(
        root, split, batch_size, schema=schema, teachers=dims, rank=rank, world_size=world_size,
        shuffle=shuffle, seed=seed, finite=finite, buffer_shards=buffer_shards, on_bad_shard=on_bad_shard,
        text=text, inputs=inputs, modality_batches=modality_batches, isomer_batches=isomer_batches,
        taught_only=taught_only,
    )  # fmt: skip
    if not stream.entries:
        raise DataError(f"{root}: split {split!r} has no shards")
    loader = Loader(stream, None if finite else int(budget), num_workers, pin_memory)
    loader.set_epoch(epoch)
    return loader


def iter_samples(root: str | Path, split: str, teachers: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Every molecule of a split in shard order, verified and decoded (`shards.shard_samples` plus
    `embeddings` {teacher: float32 (dim,) or None when missing}): tests, sanity checks, small tools."""
    from acml_dist.data.shards import shard_samples

    stream = ShardStream(
        root, split, 1, schema="hu", teachers={t: int(cache_manifest(root, t)["dim"]) for t in teachers},
        rank=0, world_size=1, shuffle=False, seed=0, finite=True, buffer_shards=1, on_bad_shard="error",
        text=TEXT,
    )  # fmt: skip
    for entry in stream.entries:
        packed = load_graph_shard(root, entry)
        embs = {}
        for t, dim in stream.dims.items():
            matrix, present = load_cache_shard(
                root, t, stream.caches[t][entry["name"]], entry, packed.blobs["key"]
            )
            embs[t] = (unpack_rows(matrix, dim).astype(np.float32), present)
        for i, sample in enumerate(shard_samples(packed)):
            sample["embeddings"] = {t: (m[i] if p[i] else None) for t, (m, p) in embs.items()}
            yield sample
