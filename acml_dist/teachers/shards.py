"""Reading graph shards and reading/writing embedding-cache shards (ARCHITECTURE.md on-disk layout).

Graph shards are read shard by shard (the cache is aligned per shard), with webdataset. A cache sample is
`__key__` + `emb.npy` (float16, (dim,)) or `missing.txt` (reason). `join_cache` is what a training reader
calls to attach one teacher's embeddings to graph samples: it fails loudly on any key or hash mismatch.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np

from acml_dist.data.shards import sha256_file
from acml_dist.errors import InputError

SPLITS = ("train", "val", "test")


class CacheMismatchError(InputError, RuntimeError):
    """An embedding cache does not match its graph shards (keys, order, teacher hash) or is incomplete."""


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _manifest_split_entries(manifest: dict[str, Any], split: str) -> Optional[list[dict[str, Any]]]:
    """Per-split shard entries from a dataset manifest; tolerant of `shards` or `splits` layouts."""
    for section in ("shards", "splits"):
        block = manifest.get(section)
        if isinstance(block, dict) and split in block:
            entries = block[split]
            if isinstance(entries, dict):
                entries = entries.get("shards", [])
            return [e if isinstance(e, dict) else {"name": str(e)} for e in entries]
    return None


def graph_shards(root: Path) -> dict[str, list[dict[str, Any]]]:
    """{split: [{"name", "path", "samples"?, "sha256"?}]} from the dataset manifest, else from the folders."""
    root = Path(root)
    manifest = read_json(root / "manifest.json") if (root / "manifest.json").exists() else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        entries = _manifest_split_entries(manifest, split)
        if entries is None:
            entries = [{"name": p.name} for p in sorted((root / split).glob("shard-*.tar"))]
        rows = []
        for e in entries:
            name = Path(e.get("name") or e.get("path", "")).name
            rows.append({**e, "name": name, "path": str(root / split / name)})
        if rows:
            out[split] = rows
    if not out:
        raise FileNotFoundError(
            f"no graph shards under {root} (expected <split>/shard-*.tar; run `acml featurize`)"
        )
    return out


def iter_tar(path: Path) -> Iterator[dict[str, Any]]:
    """Raw samples of one tar in order: {"__key__": str, "<ext>": bytes, ...}."""
    import webdataset as wds

    ds = wds.WebDataset(str(path), shardshuffle=False, empty_check=False)
    yield from ds


def decode_graph_sample(raw: dict[str, Any]) -> dict[str, Any]:
    """What a teacher needs: key, smiles, meta, and the other payloads as raw bytes (decoded by teachers)."""
    sample: dict[str, Any] = {"key": raw["__key__"]}
    for ext, value in raw.items():
        if ext.startswith("__"):
            continue
        if ext == "smiles.txt":
            sample["smiles"] = value.decode("utf-8").strip()
        elif ext == "meta.json":
            sample["meta"] = json.loads(value)
        else:
            sample[ext] = value
    return sample


def iter_graph_shard(path: Path) -> Iterator[dict[str, Any]]:
    for raw in iter_tar(path):
        yield decode_graph_sample(raw)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def write_cache_shard(path: Path, rows: list[tuple[str, Optional[np.ndarray], Optional[str]]]) -> str:
    """Write (key, float16 embedding | None, missing reason) rows to `path` atomically; return its sha256."""
    import webdataset as wds

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with wds.TarWriter(str(tmp)) as sink:
        for key, emb, reason in rows:
            if emb is not None:
                sink.write({"__key__": key, "emb.npy": npy_bytes(emb.astype(np.float16))})
            else:
                sink.write({"__key__": key, "missing.txt": (reason or "missing").encode()})
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    return digest


def iter_cache_shard(path: Path) -> Iterator[tuple[str, Optional[np.ndarray]]]:
    """(key, float16 embedding or None when the modality is missing) in shard order."""
    for raw in iter_tar(path):
        emb = load_npy(raw["emb.npy"]) if "emb.npy" in raw else None
        yield raw["__key__"], emb


def cache_dir(root: Path, teacher: str) -> Path:
    return Path(root) / "embeddings" / teacher


def cache_manifest(root: Path, teacher: str, expected_hash: Optional[str] = None) -> dict[str, Any]:
    """The teacher's cache manifest; raises CacheMismatchError if absent, incomplete or from other weights."""
    path = cache_dir(root, teacher) / "manifest.json"
    if not path.exists():
        raise CacheMismatchError(
            f"no embedding cache for teacher {teacher!r} at {path}: run `acml embed` for it or set "
            f"teachers.{teacher}.source=online"
        )
    manifest = read_json(path)
    if expected_hash is not None and manifest.get("weights_hash") != expected_hash:
        raise CacheMismatchError(
            f"embedding cache for teacher {teacher!r} was made with weights {manifest.get('weights_hash')}, "
            f"but the configured teacher has weights {expected_hash}: re-run `acml embed overwrite=true`"
        )
    return manifest


def join_cache(
    graph_samples: list[dict[str, Any]], cache_path: Path, teacher: str, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, dim) float32 and a presence mask (N,) for the graph samples of one shard, in order.

    `graph_samples` are that whole shard's samples (dicts with "key" or "__key__"); the cache shard of the
    same name must hold exactly the same keys in the same order."""
    keys = [s.get("key", s.get("__key__")) for s in graph_samples]
    embs = np.zeros((len(keys), dim), dtype=np.float32)
    mask = np.zeros(len(keys), dtype=bool)
    i = -1
    for i, (key, emb) in enumerate(iter_cache_shard(cache_path)):
        if i >= len(keys) or key != keys[i]:
            expected = keys[i] if i < len(keys) else "<end of graph shard>"
            raise CacheMismatchError(
                f"teacher {teacher!r}: cache shard {cache_path} sample {i} has key {key!r}, graph shard has "
                f"{expected!r}: the cache is stale or from another dataset; "
                "re-run `acml embed overwrite=true`"
            )
        if emb is not None:
            if emb.shape != (dim,):
                raise CacheMismatchError(
                    f"teacher {teacher!r}: {cache_path} key {key}: shape {emb.shape} != ({dim},)"
                )
            embs[i] = emb
            mask[i] = True
    if i + 1 != len(keys):
        raise CacheMismatchError(
            f"teacher {teacher!r}: cache shard {cache_path} has {i + 1} samples, graph shard has {len(keys)}"
        )
    return embs, mask
