"""Shard format: deterministic sample encoding, tar members, atomic writes, manifests, checksums.

Bytes depend only on the samples: npz members and tar headers carry fixed timestamps, owners and modes,
so the same input and config give byte-identical shards."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")


def _npy(arr: np.ndarray) -> bytes:
    """.npy bytes (format 1.0), header as np.save writes it: no pickle, fixed layout."""
    arr = np.ascontiguousarray(arr)
    header = f"{{'descr': '{arr.dtype.str}', 'fortran_order': False, 'shape': {arr.shape!r}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + arr.tobytes()


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (a stored zip of .npy members, what np.savez writes; np.load(allow_pickle=False) reads it)
    with fixed timestamps. Built directly: zipfile + np.save cost more than the graph featurisation."""
    local, central = [], []
    offset = 0
    for name in sorted(arrays):
        data = _npy(arrays[name])
        fname = f"{name}.npy".encode()
        crc = zlib.crc32(data)
        # local header: version 20, no flags, stored, DOS time/date of 1980-01-01 00:00
        head = struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(fname), 0
        )
        local.append(head + fname + data)
        central.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                0x314,
                20,
                0,
                0,
                0,
                0x21,
                crc,
                len(data),
                len(data),
                len(fname),
                0,
                0,
                0,
                0,
                0o644 << 16,
                offset,
            )
            + fname
        )
        offset += len(head) + len(fname) + len(data)
    cdir = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(cdir), offset, 0)
    return b"".join(local) + cdir + end


def decode_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def tar_member(name: str, data: bytes) -> bytes:
    """Raw bytes of one tar member (header + data + padding), with fixed metadata (GNU format, what
    tarfile writes for mtime 0, mode 644, uid/gid 0, no owner names)."""
    pad = b"\0" * ((-len(data)) % tarfile.BLOCKSIZE)
    encoded = name.encode()
    if len(encoded) >= 100 or len(data) >= 8**11:  # long names / huge members: let tarfile do the GNU extras
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
            len(data),
            0,
            0o644,
            0,
            0,
            "",
            "",
        )
        return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") + data + pad
    # Built directly: tarfile's header code costs as much as featurising the molecule.
    head = bytearray(encoded.ljust(100, b"\0") + _TAR_FIXED + b"%011o\0" % len(data) + _TAR_AFTER_SIZE)
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head) + data + pad


_TAR_FIXED = b"0000644\x000000000\x000000000\x00"
# mtime 0, checksum placeholder (8 spaces), type '0', empty link name, GNU magic, empty owner fields
_TAR_AFTER_SIZE = (b"00000000000\x00" + b" " * 8 + b"0" + b"\0" * 100 + b"ustar  \x00").ljust(
    512 - 124 - 12, b"\0"
)


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
