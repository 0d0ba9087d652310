"""The on-disk format of a featurised dataset, owned here once (ARCHITECTURE.md, on-disk layout).

A graph shard (`<split>/shard-NNNNNN.npz`) and an embedding-cache shard
(`embeddings/<teacher>/<split>/shard-NNNNNN.npz`) are each one stored (uncompressed) zip of .npy members
(`encode_npz`: fixed timestamps, so the same rows give the same bytes; read with `allow_pickle=False`):
the packed columns of `acml_dist.data.packed` for graphs; `key@data`/`key@ptr`, `present` (n,) and `emb`
float16 (n, dim) or `bits` uint8 (n, ceil(dim / 8)) (bit-packed 0/1 fingerprints) for a cache.

Every read verifies (`load_graph_shard`, `load_cache_shard`): the file's sha256 and row count against its
manifest entry, a cache's graph-shard sha256 and keys against the graph shard. A mismatch raises
`ShardError` / `ShardMismatch` naming the file and what differs (a loader may skip and count instead:
`on_bad_shard=skip`). Manifests of another schema raise `SchemaError` saying how to rebuild. A modality
output's manifest and identity (`modality_manifest`, `modality_hash`) live here too, so a cache check never
reaches up into data/modalities.py. (Past ~400 lines on purpose: the whole format is in this one file.)"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from acml_dist.data.packed import Packed, from_arrays, to_arrays
from acml_dist.errors import InputError

SCHEMA_VERSION = 2
FORMAT = "acml-packed-npz"
SPLITS = ("train", "val", "test")
REBUILD = "rebuild with `acml featurize ... overwrite=true` and then `acml embed ... overwrite=true`"


class ShardError(InputError, RuntimeError):
    """A shard or cache file is missing, truncated, changed or unreadable."""


class ShardMismatch(ShardError):
    """A cache out of step with its graph shards (other dataset, other rows, other teacher weights)."""


class SchemaError(ShardError):
    """Shards written by another schema version of acml-dist."""


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


_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|][a-z][0-9]+)', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}"
)


def decode_npz_fast(data: Any) -> dict[str, np.ndarray]:
    """`decode_npz` for files `encode_npz` wrote (stored members, .npy 1.0 headers, plain dtypes), as
    read-only views into `data`: no copy, no CRC pass, no `ast` header parse (np.load spends ~40% of the
    loader's time there). Call it only on bytes whose sha256 was checked; anything else in the file (a
    compressed member, an object dtype, another header) raises ValueError: nothing is unpickled."""
    end = data.rfind(b"PK\x05\x06")
    if end < 0:
        raise ValueError("no zip end record")
    count, _size, cdir = struct.unpack_from("<HLL", data, end + 10)
    out, pos = {}, cdir
    for _ in range(count):
        (sig, method, name_len, extra_len, comment_len, local) = struct.unpack_from(
            "<L6xH16xHHH8xL", data, pos
        )
        if sig != 0x02014B50 or method != 0:
            raise ValueError("not a stored zip member")
        name = data[pos + 46 : pos + 46 + name_len].decode()
        pos += 46 + name_len + extra_len + comment_len
        lname, lextra = struct.unpack_from("<HH", data, local + 26)
        start = local + 30 + lname + lextra
        if data[start : start + 8] != b"\x93NUMPY\x01\x00":
            raise ValueError(f"{name}: not an .npy 1.0 member")
        (hlen,) = struct.unpack_from("<H", data, start + 8)
        match = _NPY_HEADER.match(data, start + 10, start + 10 + hlen)
        if match is None:
            raise ValueError(f"{name}: unexpected .npy header")
        dtype = np.dtype(match.group(1).decode())
        shape = tuple(int(x) for x in match.group(2).split(b",") if x.strip())
        count_ = int(np.prod(shape)) if shape else 1
        arr = np.frombuffer(data, dtype, count_, start + 10 + hlen)
        out[name[: -len(".npy")] if name.endswith(".npy") else name] = arr.reshape(shape)
    return out


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
    return f"{split}/shard-{index:06d}.npz"


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def read_manifest(root: str | os.PathLike) -> dict[str, Any] | None:
    """The dataset manifest as written (any schema), or None."""
    path = Path(root) / "manifest.json"
    return read_json(path) if path.exists() else None


def write_manifest(root: str | os.PathLike, manifest: dict[str, Any]) -> None:
    write_json(Path(root) / "manifest.json", manifest)


def verify_shard(root: str | os.PathLike, entry: dict[str, Any]) -> bool:
    """True when the shard file exists and its sha256 matches the manifest entry (resume checks)."""
    path = Path(root) / entry["name"]
    return path.exists() and path.stat().st_size > 0 and sha256_file(path) == entry.get("sha256")


def _check_schema(manifest: dict[str, Any], where: Path) -> None:
    version = manifest.get("schema_version", 1)
    if version != SCHEMA_VERSION or manifest.get("format") != FORMAT:
        raise SchemaError(
            f"{where}: shards of schema version {version} ({manifest.get('format', 'WebDataset tars')}); "
            f"this acml-dist reads version {SCHEMA_VERSION} ({FORMAT}): {REBUILD}"
        )


def dataset_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete dataset of this schema (FileNotFoundError / SchemaError / ShardError)."""
    path = Path(root) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no manifest.json in {root}: featurise first (acml featurize ...)")
    manifest = read_json(path)
    _check_schema(manifest, path)
    if not manifest.get("complete"):
        raise ShardError(f"{path}: featurisation did not finish; re-run the same `acml featurize` to resume")
    return manifest


def split_entries(root: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """Manifest entries ({"name", "samples", "sha256"}) of a split's shards, in order."""
    splits = dataset_manifest(root)["splits"]
    if split not in splits:
        raise KeyError(f"split {split!r} not in {root}/manifest.json (has {sorted(splits)})")
    return list(splits[split]["shards"])


def count_samples(root: str | os.PathLike, split: str) -> int:
    return int(dataset_manifest(root)["splits"][split]["samples"])


def count_taught(root: str | os.PathLike, split: str, teachers: Sequence[str]) -> int:
    """Rows of `split` that have at least one of `teachers`' embeddings, as far as the cache manifests tell:
    the split's samples less the fewest any teacher misses. Exact for one teacher or where one teacher covers
    every row; otherwise a lower bound (for sizing an epoch). All rows without teachers."""
    samples = count_samples(root, split)
    missing = [int(cache_manifest(root, t)["splits"].get(split, {}).get("missing") or 0) for t in teachers]
    return samples - min(missing, default=0)


def cache_dir(root: str | os.PathLike, teacher: str) -> Path:
    return Path(root) / "embeddings" / teacher


def cache_manifest(
    root: str | os.PathLike, teacher: str, expected_hash: Optional[str] = None
) -> dict[str, Any]:
    """The teacher's cache manifest: present, this schema, of this dataset, and (if given) these weights."""
    path = cache_dir(root, teacher) / "manifest.json"
    if not path.exists():
        raise ShardMismatch(
            f"no embedding cache for teacher {teacher!r} at {path}: run `acml embed` for it or set "
            f"teachers.{teacher}.source=online"
        )
    manifest = read_json(path)
    _check_schema(manifest, path)
    dataset = dataset_manifest(root).get("config_hash")
    if manifest.get("dataset_hash") != dataset:
        raise ShardMismatch(
            f"embedding cache {path} belongs to another dataset (dataset_hash {manifest.get('dataset_hash')} "
            f"!= {dataset}): re-run `acml embed ... overwrite=true`"
        )
    spectra = manifest.get("spectra")  # a spectrum teacher's cache: built from this modality output?
    if isinstance(spectra, dict) and spectra.get("name"):
        current = modality_manifest(root, spectra["name"])
        if current is None or modality_hash(current) != spectra.get("sha256"):
            raise ShardMismatch(
                f"embedding cache {path} was built from another modalities/{spectra['name']} output "
                f"(changed or removed since): re-run `acml embed ... overwrite=true`"
            )
    if expected_hash is not None and manifest.get("weights_hash") != expected_hash:
        raise ShardMismatch(
            f"embedding cache {path} was built with weights {manifest.get('weights_hash')}, "
            f"expected {expected_hash}: re-run `acml embed ... overwrite=true`"
        )
    return manifest


# ---------------------------------------------------------------------------------------- write


def encode_graph_shard(packed: Packed) -> bytes:
    return encode_npz(to_arrays(packed))


def encode_cache_shard(
    keys: tuple[np.ndarray, np.ndarray], emb: np.ndarray, present: np.ndarray, bits: bool
) -> bytes:
    """A cache shard: the graph shard's keys, presence, and the (n, dim) matrix as float16 or packed bits."""
    arrays: dict[str, np.ndarray] = {"key@data": keys[0], "key@ptr": keys[1], "present": present.astype(bool)}
    if bits:
        arrays["bits"] = np.packbits(emb.astype(np.uint8), axis=1)
    else:
        arrays["emb"] = emb.astype(np.float16)
    return encode_npz(arrays)


def is_binary(emb: np.ndarray) -> bool:
    """True when every value is 0 or 1 (bit-packable without loss)."""
    return bool(emb.size) and bool(np.isin(emb, (0.0, 1.0)).all())


def cache_manifest_body(
    root: str | os.PathLike, info: dict[str, Any], bits: bool, splits: dict[str, Any]
) -> dict:
    """The fields every cache manifest has: schema, dataset, teacher (`info` = Teacher.describe()),
    encoding, and `splits` {split: {"samples", "missing", "shards": [{"name", "samples", "missing",
    "sha256", "graph_sha256"}]}}."""
    return {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "dataset_hash": dataset_manifest(root).get("config_hash"),
        "encoding": "bits" if bits else "float16",
        "dtype": "float16",  # of a float cache's values; `encoding` says whether bits are packed instead
        "teacher": info["name"],
        **{k: info[k] for k in ("kind", "modality", "dim", "weights_hash")},
        "splits": splits,
    }


# ---------------------------------------------------------------------------------------- read


# Files this process has hashed: (path, inode, size, mtime_ns) -> sha256. A loader worker that lives across
# epochs hashes each shard once; a file rewritten since (new inode, size or mtime) is hashed again.
_VERIFIED: dict[tuple[str, int, int, int], str] = {}


def _read_checked(path: Path, entry: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise ShardError(
            f"shard {path}: missing (the manifest lists it with {entry.get('samples')} rows)"
        ) from None
    with fh:
        st = os.fstat(fh.fileno())
        # mapped, not copied: the arrays below are views of the page cache
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if st.st_size else b""
    stamp = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _VERIFIED.get(stamp)
    if digest is None:
        digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        raise ShardError(
            f"shard {path}: sha256 {digest[:16]}... != manifest {str(entry.get('sha256'))[:16]}... "
            f"({st.st_size} bytes): the file was changed, truncated or replaced; {REBUILD}"
        )
    _VERIFIED[stamp] = digest
    try:
        return decode_npz_fast(data)
    except Exception as exc:  # noqa: BLE001 - a file with the manifest's digest that numpy refuses
        raise ShardError(f"shard {path}: unreadable ({type(exc).__name__}: {exc})") from exc


def load_graph_shard(root: str | os.PathLike, entry: dict[str, Any]) -> Packed:
    """A graph shard's rows, after its sha256 and row count are checked against its manifest entry."""
    path = Path(root) / entry["name"]
    arrays = _read_checked(path, entry)
    try:
        packed = from_arrays(arrays)
    except KeyError as exc:
        raise ShardError(f"shard {path}: no member {exc} (not a packed graph shard)") from exc
    if packed.n != entry.get("samples"):
        raise ShardError(f"shard {path}: {packed.n} rows, the manifest says {entry.get('samples')}")
    return packed


def load_cache_shard(
    root: str | os.PathLike, teacher: str, centry: dict[str, Any], gentry: dict[str, Any], keys: Any
) -> tuple[np.ndarray, np.ndarray]:
    """A cache shard's (matrix, present) after checking it against its manifest entry and its graph shard
    (`gentry`, and `keys` = the graph shard's (data, ptr) key column). The matrix is float16 (n, dim), or
    uint8 (n, ceil(dim / 8)) packed bits for a fingerprint cache (`unpack_rows` gives 0/1)."""
    path = cache_dir(root, teacher) / centry["name"]
    if centry.get("graph_sha256") != gentry.get("sha256"):
        raise ShardMismatch(
            f"cache shard {path} was built from another graph shard (graph sha256 "
            f"{str(centry.get('graph_sha256'))[:16]}... != {gentry['name']} "
            f"{str(gentry.get('sha256'))[:16]}...): "
            f"re-run `acml embed ... overwrite=true`"
        )
    arrays = _read_checked(path, centry)
    matrix = arrays.get("bits", arrays.get("emb"))
    if matrix is None or "present" not in arrays or len(matrix) != centry.get("samples"):
        raise ShardError(f"cache shard {path}: rows or members differ from its manifest entry")
    if not (np.array_equal(arrays["key@ptr"], keys[1]) and np.array_equal(arrays["key@data"], keys[0])):
        raise ShardMismatch(f"cache shard {path}: keys differ from graph shard {gentry['name']}: {REBUILD}")
    return matrix, arrays["present"]


def cache_entries(manifest: dict[str, Any], split: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in manifest.get("splits", {}).get(split, {}).get("shards", [])}


def unpack_rows(matrix: np.ndarray, dim: int) -> np.ndarray:
    """(n, dim) values of a cache matrix: float16 as is, packed bits as uint8 0/1."""
    if matrix.dtype == np.uint8:
        return np.unpackbits(matrix, axis=1, count=dim)
    return matrix


def shard_samples(packed: Packed) -> list[dict[str, Any]]:
    """Per-molecule dicts of a shard (teachers, tests; not the training path): key, smiles, meta,
    arrays (the graph as `mol_to_graph` gives it), image (PNG bytes or None), and every bytes column under
    its member name ("image.png", later modalities) when present."""
    out = []
    keys, smiles, metas = packed.texts("key"), packed.texts("smiles.txt"), packed.texts("meta.json")
    for i in range(packed.n):
        sample: dict[str, Any] = {"key": keys[i], "smiles": smiles[i], "meta": json.loads(metas[i])}
        sample["arrays"] = packed.graph(i)
        for name in packed.blobs:
            if name not in ("key", "smiles.txt", "meta.json"):
                value = packed.blob(name, i)
                if value is not None:
                    sample[name] = value
        sample["image"] = sample.get("image.png")
        out.append(sample)
    return out


# ------------------------------------------------------------------------------ modality outputs
MODALITIES_DIR = "modalities"  # <dataset>/modalities/<name>/: chunk npz files + manifest (data/modalities.py)


def modality_manifest(root: str | Path, modality: str) -> Optional[dict[str, Any]]:
    path = Path(root) / MODALITIES_DIR / modality / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def modality_hash(manifest: dict[str, Any]) -> str:
    """Identity of a modality output's contents: sha256 over its bins and its chunks' (name, rows, sha256).
    An embedding cache built from it records this; a rewritten output (new import, new prediction) differs."""
    body = {
        "bins": manifest.get("bins"),
        "chunks": [[c["name"], c["samples"], c["sha256"]] for c in manifest.get("chunks", [])],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
