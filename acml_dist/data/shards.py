"""Shard format: deterministic sample encoding, tar members, atomic writes, manifests, checksums.

Bytes depend only on the samples: npz members and tar headers carry fixed timestamps, owners and modes,
so the same input and config give byte-identical shards."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (what np.savez writes, readable by np.load(allow_pickle=False)) with fixed zip timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def decode_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def tar_member(name: str, data: bytes) -> bytes:
    """Raw bytes of one tar member (header + data + padding), with fixed metadata."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    header = info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape")
    pad = (-len(data)) % tarfile.BLOCKSIZE
    return header + data + b"\0" * pad


def sample_members(key: str, files: dict[str, bytes]) -> bytes:
    """All members of one sample (`<key>.<ext>`), extensions in sorted order."""
    return b"".join(tar_member(f"{key}.{ext}", files[ext]) for ext in sorted(files))


def tar_end(size: int) -> bytes:
    """End-of-archive blocks, padded to tarfile's record size like tarfile.close() does."""
    end = b"\0" * (2 * tarfile.BLOCKSIZE)
    pad = (-(size + len(end))) % tarfile.RECORDSIZE
    return end + b"\0" * pad


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_name(split: str, index: int) -> str:
    return f"{split}/shard-{index:06d}.tar"


def read_manifest(root: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(root) / "manifest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_manifest(root: str | os.PathLike, manifest: dict[str, Any]) -> None:
    atomic_write(
        Path(root) / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    )


def verify_shard(root: str | os.PathLike, entry: dict[str, Any]) -> bool:
    """True when the shard file exists and its sha256 matches the manifest entry."""
    path = Path(root) / entry["name"]
    return path.exists() and path.stat().st_size > 0 and sha256_file(path) == entry.get("sha256")


def shard_paths(root: str | os.PathLike, split: str) -> list[str]:
    """Shard files of a split in order, from the manifest (error if the split is missing)."""
    manifest = read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no manifest.json in {root}: featurise first (acml featurize ...)")
    splits = manifest.get("splits", {})
    if split not in splits:
        raise KeyError(f"split {split!r} not in {root}/manifest.json (has {sorted(splits)})")
    return [str(Path(root) / s["name"]) for s in splits[split]["shards"]]
