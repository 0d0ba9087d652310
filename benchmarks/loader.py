"""Training-loader benchmark: packed shards + slicing loader against the old per-sample WebDataset loader,
in one run, one process (= one loader worker), graphs + rxnfp (256-d float16) + Morgan (2048 bits) caches,
shuffled, batches of 1024. Ends with one JSON line (`loader_mol_s_per_worker`, `ratio_vs_old_loader`,
`bytes_per_molecule`, ...).

    python benchmarks/loader.py --quick            # < 1 minute (20k MOSES molecules)
    python benchmarks/loader.py --molecules 100000

The old loader (schema 1: a tar member per field, an npz parse, a PyG Data and a collate per molecule) is
kept here, and only here, as the baseline. rxnfp values are random float16 (the loader's cost does not
depend on them); Morgan bits are RDKit's.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 1024


def build(root: Path, smiles: list[str], per_shard: int) -> dict[str, Any]:
    """The same molecules as packed shards (+ 2 caches, through acml_dist.data.shards) and as old tars."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    from acml_dist.chem.featurize import smiles_to_graphs
    from acml_dist.data.packed import Packed
    from acml_dist.data.shards import (
        FORMAT,
        SCHEMA_VERSION,
        atomic_write,
        cache_dir,
        cache_manifest_body,
        encode_cache_shard,
        encode_graph_shard,
        encode_npz,
        shard_name,
        write_manifest,
    )

    graphs = smiles_to_graphs(smiles)
    keep = [i for i, g in enumerate(graphs) if g is not None]
    smiles, graphs = [smiles[i] for i in keep], [graphs[i] for i in keep]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    t0 = time.perf_counter()
    morgan = np.stack([gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles]).astype(np.uint8)
    morgan_rate = len(smiles) / (time.perf_counter() - t0)
    rxnfp = np.random.default_rng(0).standard_normal((len(smiles), 256)).astype(np.float16)
    keys = [f"moses_{i:07d}" for i in range(len(smiles))]
    metas = [
        json.dumps({"source": "moses", "source_id": k, "input": s}).encode() for k, s in zip(keys, smiles)
    ]
    manifest: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "format": FORMAT, "complete": True}
    manifest["config_hash"] = "bench"
    entries, cache_entries = [], {"rxnfp": [], "morgan": []}
    old = root / "old"
    old.mkdir(parents=True)
    for n, a in enumerate(range(0, len(smiles), per_shard)):
        b = min(a + per_shard, len(smiles))
        packed = Packed.from_graphs(
            graphs[a:b],
            {"key": [k.encode() for k in keys[a:b]], "smiles.txt": [s.encode() for s in smiles[a:b]],
             "meta.json": metas[a:b]},
        )  # fmt: skip
        data = encode_graph_shard(packed)
        name = shard_name("train", n)
        atomic_write(root / name, data)
        entries.append({"name": name, "samples": b - a, "sha256": hashlib.sha256(data).hexdigest()})
        for t, mat in (("rxnfp", rxnfp), ("morgan", morgan)):
            cdata = encode_cache_shard(
                packed.blobs["key"], mat[a:b], np.ones(b - a, bool), bits=t == "morgan"
            )
            atomic_write(cache_dir(root, t) / name, cdata)
            cache_entries[t].append(
                {"name": name, "samples": b - a, "sha256": hashlib.sha256(cdata).hexdigest(),
                 "graph_sha256": entries[-1]["sha256"]}
            )  # fmt: skip
        # the old layout: one tar member per field and molecule
        for sub, rows in (
            ("graph", [{"graph.npz": encode_npz(g), "smiles.txt": s.encode(), "meta.json": m}
                       for g, s, m in zip(graphs[a:b], smiles[a:b], metas[a:b])]),
            ("rxnfp", [{"emb.npy": _npy(v)} for v in rxnfp[a:b]]),
            ("morgan", [{"emb.npy": _npy(v.astype(np.float16))} for v in morgan[a:b]]),
        ):  # fmt: skip
            write_tar(old / sub / f"shard-{n:06d}.tar", keys[a:b], rows)
    manifest["splits"] = {"train": {"samples": len(smiles), "shards": entries}}
    write_manifest(root, manifest)
    for t, dim in (("rxnfp", 256), ("morgan", 2048)):
        info = {"name": t, "kind": "fingerprint" if t == "morgan" else "smiles_lm", "modality": "smiles",
                "dim": dim, "weights_hash": t}  # fmt: skip
        body = cache_manifest_body(root, info, t == "morgan", {"train": {"shards": cache_entries[t]}})
        (cache_dir(root, t) / "manifest.json").write_text(json.dumps(body))
    return {"molecules": len(smiles), "morgan_rdkit_mol_s": round(morgan_rate)}


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_tar(path: Path, keys: list[str], rows: list[dict[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, row in zip(keys, rows):
            for ext, data in sorted(row.items()):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------------------ the old loader (baseline)
def _tar_samples(path: Path) -> Iterator[dict[str, Any]]:
    current: dict[str, Any] = {}
    with tarfile.open(path, mode="r|") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            fh = tar.extractfile(member)
            current[ext] = fh.read() if fh else b""
    if current:
        yield current


def old_loader(old: Path, n_batches: int) -> Iterator[Any]:
    """What make_loader did before the packed format: tar members, npz per molecule, join in lock step,
    a 1000-sample shuffle buffer, PyG Data per molecule and Batch.from_data_list."""
    import torch
    from torch_geometric.data import Batch

    from acml_dist.data.loader import graph_from_npz
    from acml_dist.data.shards import decode_npz

    def samples() -> Iterator[dict[str, Any]]:
        for path in sorted((old / "graph").glob("*.tar")):
            its = {t: _tar_samples(old / t / path.name) for t in ("rxnfp", "morgan")}
            for s in _tar_samples(path):
                for t, it in its.items():
                    e = next(it)
                    assert e["__key__"] == s["__key__"]
                    s[t] = np.load(io.BytesIO(e["emb.npy"]), allow_pickle=False).astype(np.float32)
                yield s

    rng, buf, batch, made = random.Random(0), [], [], 0
    for s in samples():
        buf.append(s)
        if len(buf) < 1000:
            continue
        s = buf.pop(rng.randrange(len(buf)))
        s["arrays"] = decode_npz(s["graph.npz"])
        s["smiles"], s["meta"] = s["smiles.txt"].decode(), json.loads(s["meta.json"])
        batch.append(s)
        if len(batch) == BATCH:
            graph = Batch.from_data_list([graph_from_npz(x["arrays"]) for x in batch])
            embs = {t: torch.from_numpy(np.stack([x[t] for x in batch])) for t in ("rxnfp", "morgan")}
            yield graph, embs  # what the old MolBatch held (float32 embeddings)
            batch, made = [], made + 1
            if made == n_batches:
                return


# ------------------------------------------------------------------------------ measurements
def rate(it: Iterator[Any], n_batches: int) -> tuple[float, float]:
    """(molecules per wall second, molecules per CPU second of this process) over n_batches batches.
    Bit-packed Morgan rows stay packed (the trainer unpacks them after the copy to the device; on a CPU
    numpy unpacks a batch at `morgan_unpack_mol_s`)."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    for i, b in enumerate(it):
        graph = b[0] if isinstance(b, tuple) else b.graph
        n += int(graph.num_graphs)
        if i + 1 == n_batches:
            break
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def container(root: Path) -> dict[str, Any]:
    """Reading one shard's columns: the npz we write vs a tar with one .npy member per column."""
    from acml_dist.data.shards import decode_npz, decode_npz_fast

    path = root / "train" / "shard-000000.npz"
    data = path.read_bytes()
    arrays = decode_npz(data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for k, v in arrays.items():
            raw = _npy(v)
            info = tarfile.TarInfo(f"shard.{k}.npy")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    tar_bytes = buf.getvalue()
    arrow_bytes = _arrow(arrays)

    def read_arrow() -> None:  # one row per molecule, list columns; numpy views of the values
        import pyarrow as pa

        table = pa.ipc.open_file(pa.BufferReader(arrow_bytes)).read_all()
        for col in table.columns:
            chunk = col.chunks[0]
            if pa.types.is_list(chunk.type):
                chunk.offsets.to_numpy(zero_copy_only=True)
                chunk.values.flatten().to_numpy(zero_copy_only=True)
            else:
                [np.frombuffer(b, np.uint8) for b in chunk.buffers() if b is not None]

    def read_tar() -> None:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r|") as tar:
            for m in tar:
                fh = tar.extractfile(m)
                np.load(io.BytesIO(fh.read()), allow_pickle=False)

    out = {}
    for name, fn in (("npz", lambda: decode_npz(data)), ("npz_views", lambda: decode_npz_fast(data)),
                     ("tar_of_npy", read_tar), ("arrow_ipc", read_arrow),
                     ("sha256", lambda: hashlib.sha256(data).digest())):  # fmt: skip
        t0, reps = time.perf_counter(), 50
        for _ in range(reps):
            fn()
        out[f"{name}_MB_s"] = round(len(data) * reps / (time.perf_counter() - t0) / 1e6)
    out["npz_bytes"], out["tar_of_npy_bytes"], out["arrow_ipc_bytes"] = (
        len(data),
        len(tar_bytes),
        len(arrow_bytes),
    )
    return out


def _arrow(arrays: dict[str, np.ndarray]) -> bytes:
    """The shard's columns as an Arrow IPC file: per molecule, lists of fixed-size atom / edge rows and
    binary text columns (the layout Arrow would give the same data)."""
    import pyarrow as pa

    cols = {}
    for name, ptr in (("hu_x", "atom_ptr"), ("ogb_x", "atom_ptr"), ("edge_index", "edge_ptr"),
                      ("hu_edge_attr", "edge_ptr"), ("ogb_edge_attr", "edge_ptr")):  # fmt: skip
        v = arrays[name]
        flat = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        cols[name] = pa.ListArray.from_arrays(pa.array(arrays[ptr].astype(np.int32)), flat)
    for name in ("key", "smiles.txt", "meta.json"):
        data, ptr = arrays[f"{name}@data"], arrays[f"{name}@ptr"]
        cols[name] = pa.BinaryArray.from_buffers(
            pa.binary(), len(ptr) - 1, [None, pa.py_buffer(ptr.astype(np.int32)), pa.py_buffer(data)]
        )
    table = pa.table(cols)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--molecules", type=int, default=100_000)
    ap.add_argument("--per-shard", type=int, default=1000)
    args = ap.parse_args()
    import torch

    from acml_dist.data import shards
    from acml_dist.data.datasets import moses_smiles
    from acml_dist.data.loader import make_loader

    torch.set_num_threads(1)
    n_mol = 10_000 if args.quick else args.molecules
    t_start = time.time()
    out: dict[str, Any] = {"benchmark": "loader", "mode": "quick" if args.quick else "full"}
    out["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        t0 = time.time()
        out.update(build(root, moses_smiles(n_mol), args.per_shard))
        out["build_s"] = round(time.time() - t0, 1)
        n = out["molecules"]
        sizes = {
            "graph": sum(p.stat().st_size for p in (root / "train").glob("*.npz")),
            "rxnfp": sum(p.stat().st_size for p in (root / "embeddings/rxnfp/train").glob("*.npz")),
            "morgan": sum(p.stat().st_size for p in (root / "embeddings/morgan/train").glob("*.npz")),
            "old_graph": sum(p.stat().st_size for p in (root / "old/graph").glob("*.tar")),
            "old_morgan": sum(p.stat().st_size for p in (root / "old/morgan").glob("*.tar")),
        }
        out["bytes_per_molecule_by_part"] = {k: round(v / n) for k, v in sizes.items()}
        out["bytes_per_molecule"] = round((sizes["graph"] + sizes["rxnfp"] + sizes["morgan"]) / n)
        out["container"] = container(root)
        batches = n // BATCH
        kw = {
            "teachers": ("rxnfp", "morgan"),
            "shuffle": True,
            "batches_per_epoch": batches,
            "text": ("key",),
        }
        rate(iter(make_loader(root, "train", BATCH, **kw)), 2)  # warm-up (imports, page cache)
        shards._VERIFIED.clear()  # the first epoch of a worker hashes every shard it reads
        first = rate(iter(make_loader(root, "train", BATCH, **kw)), batches)
        out["loader_first_epoch_mol_s_per_worker"] = round(first[1])
        new = [rate(iter(make_loader(root, "train", BATCH, epoch=e, **kw)), batches) for e in range(1, 4)]
        # One process = one loader worker; on a shared machine the wall rate also counts time the process
        # waited for a core, so the per-worker figure is molecules per CPU second of the process. Later
        # epochs of a worker (workers persist) do not hash again a shard whose inode, size and mtime held.
        out["loader_mol_s_per_worker"] = round(max(c for _, c in new))
        out["loader_mol_s_wall"] = round(max(w for w, _ in new))
        graphs_only = {**kw, "teachers": ()}
        out["loader_graphs_only_mol_s_per_worker"] = round(
            rate(iter(make_loader(root, "train", BATCH, **graphs_only)), batches)[1]
        )
        old_batches = 3 if args.quick else 10
        old_wall, old_cpu = rate(old_loader(root / "old", old_batches), old_batches)
        out["old_loader_mol_s_per_worker"], out["old_loader_mol_s_wall"] = round(old_cpu), round(old_wall)
        out["ratio_vs_old_loader"] = round(out["loader_mol_s_per_worker"] / old_cpu, 1)
        out["ratio_vs_old_loader_wall"] = round(out["loader_mol_s_wall"] / old_wall, 1)
        if not args.quick:  # two worker processes of one rank (the machine's 2 cores), wall clock
            loader = make_loader(root, "train", BATCH, num_workers=2, **kw)
            rate(iter(loader), batches)
            out["loader_2_workers_mol_s_wall"] = round(rate(iter(loader), batches)[0])
        out["morgan_unpack_mol_s"] = round(_unpack_rate())
        out["worker_transfer"] = transfer(root, min(batches, 20))
        out["goal_per_worker"], out["floor_per_worker"] = 300_000, 150_000
    out["wall_s"] = round(time.time() - t_start, 1)
    print(json.dumps(out))


def _produce(q: Any, done: Any, root: Path, n: int, per_tensor: bool) -> None:
    """A loader worker's side: n batches of BATCH, sent as one buffer (MolBatch) or tensor by tensor."""
    from acml_dist.data.loader import make_loader

    teachers = ("rxnfp", "morgan")
    for b in list(make_loader(root, "train", BATCH, teachers=teachers, batches_per_epoch=n, text=("key",))):
        q.put(({"graph": b.graph, **b._embeddings, **{f"m:{k}": v for k, v in b.masks.items()}}, b.text)
              if per_tensor else b)  # fmt: skip
    q.put(None)
    done.wait()  # file-descriptor sharing needs the sender alive until the receiver has taken every batch


def transfer(root: Path, n: int) -> dict[str, Any]:
    """CPU seconds the RECEIVING process spends per batch taken from a worker (what caps a GPU loop fed by
    many workers): one shared-memory buffer per batch vs one per tensor, torch's two sharing strategies."""
    import torch.multiprocessing as tmp

    out = {}
    for strategy in ("file_descriptor", "file_system"):
        tmp.set_sharing_strategy(strategy)
        for per_tensor in (True, False):
            ctx = tmp.get_context("fork")
            q, done = ctx.Queue(maxsize=n + 1), ctx.Event()
            proc = ctx.Process(target=_produce, args=(q, done, root, n, per_tensor))
            proc.start()
            first, cpu = q.get(), 0.0  # the worker has built every batch before the first one is sent
            while True:
                t0 = time.process_time()
                item = q.get()
                if item is None:
                    break
                cpu += time.process_time() - t0
                del item
            done.set()
            proc.join()
            del first
            key = f"{'per_tensor' if per_tensor else 'one_buffer'}_{strategy}_ms_per_batch"
            out[key] = round(1000 * cpu / (n - 1), 2)
    tmp.set_sharing_strategy("file_descriptor")
    out["ratio_per_tensor_fd_vs_one_buffer_fs"] = round(
        out["per_tensor_file_descriptor_ms_per_batch"] / out["one_buffer_file_system_ms_per_batch"], 2
    )
    return out


def _unpack_rate() -> float:
    bits = np.random.default_rng(0).integers(0, 256, (BATCH, 256), dtype=np.uint8)
    t0, reps = time.perf_counter(), 50
    for _ in range(reps):
        np.unpackbits(bits, axis=1, count=2048)
    return BATCH * reps / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
