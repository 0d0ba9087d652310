"""Per-modality outputs keyed by molecule key, beside a featurised dataset (written apart from the shards).

    shards/<name>/modalities/<modality>/      (modality: nmr13c, nmr1h, ms, ...)
      manifest.json         modality, producer, bins, counts {selected, written, rejected}, reject_reasons,
                            chunks [{name, samples, sha256}], complete, rates
      rejects.jsonl         {"key", "smiles", "reason"} per molecule / record without this modality
      chunk-000000.npz      keys <U (n,), spectra float32 (n, n_bins), peaks float32 (total,),
                            atoms int32 (total,) (-1 where a peak has no atom), offsets int64 (n + 1)
    shards/<name>/modalities/image/            (`acml depict`, data/image_stage.py; manifest "kind": "image")
      chunk-000000.npz      keys <U (n,), images uint8 (n, size, size) (255 = white paper), deflated

A chunk is written atomically (a deflated npz to a temporary name, then rename); npz files hold no objects
(`np.load(..., allow_pickle=False)` reads them). The shard writer joins these by key into its aligned
columns with a presence mask; `read_modality` is the reference reader."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from acml_dist.chem.spectra import BinSpec
from acml_dist.data.shards import (  # noqa: F401 - modality_hash: the format's, used through here too
    MODALITIES_DIR,
    atomic_write,
    modality_hash,
    modality_manifest,
    sha256_file,
)


def modality_dir(root: str | Path, modality: str) -> Path:
    return Path(root) / MODALITIES_DIR / modality


def chunk_name(index: int) -> str:
    return f"chunk-{index:06d}.npz"


def encode_chunk(
    keys: Sequence[str],
    spectra: Sequence[np.ndarray],
    peaks: Sequence[np.ndarray],
    n_bins: int,
    atoms: Optional[Sequence[np.ndarray]] = None,
) -> bytes:
    """The npz bytes of one chunk (see the module docstring); deterministic for the same input."""
    n = len(keys)
    if len(spectra) != n or len(peaks) != n or (atoms is not None and len(atoms) != n):
        raise ValueError("keys, spectra, peaks (and atoms) must have the same length")
    lengths = np.array([len(p) for p in peaks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate([np.asarray(p, np.float32) for p in peaks]) if n else np.zeros(0, np.float32)
    if atoms is None:
        atom_arr = np.full(int(offsets[-1]), -1, dtype=np.int32)
    else:
        atom_arr = np.concatenate([np.asarray(a, np.int32) for a in atoms]) if n else np.zeros(0, np.int32)
    spec_arr = (
        np.stack([np.asarray(s, np.float32) for s in spectra]) if n else np.zeros((0, n_bins), np.float32)
    )
    return deflated_npz(
        {
            "keys": np.array(list(keys), dtype=str) if n else np.zeros(0, dtype="<U1"),
            "spectra": spec_arr,
            "peaks": flat.astype(np.float32),
            "atoms": atom_arr,
            "offsets": offsets,
        }
    )


def deflated_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An npz whose members are deflated (binned spectra are mostly zeros: 13C shrinks ~50x), with fixed
    timestamps so the same arrays give the same bytes; np.load(allow_pickle=False) reads it."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def write_chunk(out_dir: Path, index: int, data: bytes, n: int) -> dict[str, Any]:
    """Write one chunk (`n` molecules) atomically; its manifest entry."""
    import hashlib

    atomic_write(out_dir / chunk_name(index), data)
    return {"name": chunk_name(index), "samples": n, "sha256": hashlib.sha256(data).hexdigest()}


def verify_chunk(out_dir: Path, entry: dict[str, Any]) -> bool:
    path = out_dir / entry["name"]
    return path.exists() and sha256_file(path) == entry.get("sha256")


def bins_dict(spec: BinSpec) -> dict[str, Any]:
    return asdict(spec)


def read_manifest(root: str | Path, modality: str) -> Optional[dict[str, Any]]:
    return modality_manifest(root, modality)


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write a modality output's manifest; once it is complete, the corpus's `modalities/manifest.json`."""
    atomic_write(out_dir / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    if manifest.get("complete"):
        write_corpus_counts(out_dir.parent.parent)


def corpus_counts(root: str | Path) -> dict[str, Any]:
    """How many of a dataset's molecules have each complete modality output: {"dataset", "molecules",
    "modalities": {name: {"producer", "package", "read", "written", "rejected", "fraction"}}}."""
    from acml_dist.data.shards import read_manifest as dataset_manifest

    dataset = dataset_manifest(root) or {}
    molecules = int((dataset.get("counts") or {}).get("written", 0))
    out: dict[str, Any] = {}
    base = Path(root) / MODALITIES_DIR
    for d in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        m = read_manifest(root, d.name)
        if not m or not m.get("complete"):
            continue
        counts, producer = m.get("counts") or {}, m.get("producer") or {}
        written = int(counts.get("written", 0))
        out[d.name] = {
            "producer": producer.get("kind"),  # depiction | predicted | measured (files read in)
            "package": producer.get("package"),
            "read": int(counts.get("selected", counts.get("records", 0))),  # molecules asked / records read
            "written": written,
            "rejected": int(counts.get("rejected", 0)),
            "fraction": round(written / molecules, 4) if molecules else None,
        }
    return {"dataset": dataset.get("name"), "molecules": molecules, "modalities": out}


def write_corpus_counts(root: str | Path) -> Path:
    """`<dataset>/modalities/manifest.json`: the corpus's modality counts in one file, rewritten from the
    complete outputs on disk whenever one completes (so outputs written side by side all appear)."""
    path = Path(root) / MODALITIES_DIR / "manifest.json"
    atomic_write(path, (json.dumps(corpus_counts(root), indent=2, sort_keys=True) + "\n").encode())
    return path


def iter_modality(root: str | Path, modality: str, verify: bool = True) -> Iterator[dict[str, Any]]:
    """Each molecule of a complete modality output: {"key", "spectrum", "peaks", "atoms"} in chunk order.
    Raises FileNotFoundError when missing, ValueError when incomplete or a checksum differs."""
    out_dir = modality_dir(root, modality)
    manifest = read_manifest(root, modality)
    if manifest is None:
        raise FileNotFoundError(
            f"no {modality} output at {out_dir} (run `acml nmr-predict` or import spectra)"
        )
    if not manifest.get("complete"):
        raise ValueError(f"{out_dir} is incomplete: re-run the stage that writes it (it resumes)")
    for entry in manifest["chunks"]:
        if verify and not verify_chunk(out_dir, entry):
            raise ValueError(f"{out_dir / entry['name']}: missing or sha256 differs from the manifest")
        with np.load(out_dir / entry["name"], allow_pickle=False) as z:
            if "images" in z.files:  # an image modality (encode_image_chunk)
                yield from ({"key": str(k), "image": im} for k, im in zip(z["keys"], z["images"]))
                continue
            keys, spectra, peaks, atoms, off = z["keys"], z["spectra"], z["peaks"], z["atoms"], z["offsets"]
        for i, key in enumerate(keys):
            a, b = int(off[i]), int(off[i + 1])
            yield {"key": str(key), "spectrum": spectra[i], "peaks": peaks[a:b], "atoms": atoms[a:b]}


def read_modality(root: str | Path, modality: str) -> dict[str, np.ndarray]:
    """key -> binned spectrum (float32), or image (uint8) for an image modality, of a complete modality
    output (small datasets, tests)."""
    return {r["key"]: r["spectrum"] if "spectrum" in r else r["image"] for r in iter_modality(root, modality)}


def encode_image_chunk(keys: Sequence[str], images: Sequence[np.ndarray], size: int) -> bytes:
    """The npz bytes of one image chunk: keys, images uint8 (n, size, size); deterministic."""
    n = len(keys)
    if len(images) != n:
        raise ValueError("keys and images must have the same length")
    arr = np.stack([np.asarray(im, np.uint8) for im in images]) if n else np.zeros((0, size, size), np.uint8)
    if arr.shape[1:] != (size, size):
        raise ValueError(f"images must be {size}x{size}, got {arr.shape[1:]}")
    keys_arr = np.array(list(keys), dtype=str) if n else np.zeros(0, dtype="<U1")
    return deflated_npz({"keys": keys_arr, "images": arr})


def read_images(root: str | Path, modality: str = "image") -> tuple[list[str], np.ndarray]:
    """(keys, images uint8 (N, size, size)) of a complete image modality, chunks concatenated."""
    keys, images = [], []
    for r in iter_modality(root, modality):
        if "image" not in r:
            raise ValueError(f"{modality_dir(root, modality)} holds spectra, not images")
        keys.append(r["key"])
        images.append(r["image"])
    if not images:
        return [], np.zeros((0, 0, 0), np.uint8)
    return keys, np.stack(images)


def iter_dataset_molecules(root: str | Path, splits: Sequence[str]) -> Iterator[dict[str, Any]]:
    """(key, smiles, inchikey, formula, source_id, split) of a featurised dataset's molecules in shard
    order."""
    from acml_dist.data.loader import iter_samples
    from acml_dist.data.shards import read_manifest as dataset_manifest

    manifest = dataset_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no manifest.json in {root}: featurise first (acml featurize ...)")
    for split in splits:
        if split not in manifest.get("splits", {}):
            continue
        for s in iter_samples(root, split):
            meta = s.get("meta") or {}
            yield {
                "key": s["key"],
                "smiles": s.get("smiles", ""),
                "inchikey": meta.get("inchikey"),
                "formula": meta.get("formula"),
                "source_id": meta.get("source_id"),
                "split": split,
            }


# ------------------------------------------------------------------ aligned to the shards (embedding cache)

# Teacher kinds whose input is a binned spectrum from `modalities/<name>/` (attached to each shard sample
# as `<modality>.npy` before encoding); other kinds read the graph shard's own columns.
SPECTRUM_KINDS = ("cress_nmr13c", "conv1d_spectrum")


def reads_modality_output(kind: str, params: dict[str, Any]) -> bool:
    """Whether a teacher of `kind` reads its input from `modalities/<params.spectra or modality>/`: the
    spectrum kinds always; the image CNN when it does not draw missing depictions itself (`render: false`),
    so that only the molecules `acml depict` drew have the image modality."""
    return kind in SPECTRUM_KINDS or (kind == "image_cnn" and not params.get("render", True))


class ModalityLookup:
    """The spectra (or images) of a complete modality output looked up by molecule key, for aligning them
    to shards.

    Each chunk is read once and kept compressed in memory (a 13C spectrum is ~0.15 KB deflated); its sha256
    is checked against the manifest on that read, and only those verified bytes are decoded afterwards, so
    what is embedded is what the manifest lists. Decoded spectra of the last chunks used are kept
    (`keep` chunks): shards and chunks both follow dataset order, so a shard touches a few chunks (more when
    a subset grew: its new molecules are in chunks of their own)."""

    def __init__(self, root: str | Path, name: str, keep: int = 8) -> None:
        import hashlib
        import io

        self.name, self.dir, self.keep = name, modality_dir(root, name), keep
        manifest = read_manifest(root, name)
        if manifest is None:
            raise FileNotFoundError(
                f"no {name} output at {self.dir} (run `acml nmr-predict`, `acml import-spectra` or "
                "`acml depict` first)"
            )
        if not manifest.get("complete"):
            raise ValueError(f"{self.dir} is incomplete: re-run the stage that writes it (it resumes)")
        self.manifest, self.hash = manifest, modality_hash(manifest)
        self.n_bins = int((manifest.get("bins") or {}).get("n_bins") or 0)
        self._raw: list[bytes] = []
        self._where: dict[str, tuple[int, int]] = {}
        for c, entry in enumerate(manifest["chunks"]):
            data = (self.dir / entry["name"]).read_bytes() if (self.dir / entry["name"]).exists() else b""
            if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                raise ValueError(f"{self.dir / entry['name']}: missing or sha256 differs from the manifest")
            self._raw.append(data)
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                keys = z["keys"]
            if len(keys) != entry.get("samples"):
                raise ValueError(f"{self.dir / entry['name']}: {len(keys)} rows, the manifest says "
                                 f"{entry.get('samples')}")  # fmt: skip
            for row, key in enumerate(keys):
                self._where[str(key)] = (c, row)
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def _spectra(self, chunk: int) -> np.ndarray:
        import io

        if chunk not in self._decoded:
            with np.load(io.BytesIO(self._raw[chunk]), allow_pickle=False) as z:
                spectra = z["images"] if "images" in z.files else z["spectra"]
            while len(self._decoded) >= self.keep:
                self._decoded.pop(next(iter(self._decoded)))
            self._decoded[chunk] = spectra
        return self._decoded[chunk]

    def get(self, key: str) -> Optional[np.ndarray]:
        """The binned spectrum (float32, n_bins) or image (uint8) of `key`; None if the molecule has none."""
        where = self._where.get(key)
        if where is None:
            return None
        return self._spectra(where[0])[where[1]]

    def attach(self, samples: list[dict[str, Any]], member: str) -> int:
        """Put each sample's spectrum under `member` (e.g. "nmr13c.npy"); how many samples got one."""
        found = 0
        for s in samples:
            spectrum = self.get(s["key"])
            if spectrum is not None:
                s[member] = spectrum
                found += 1
        return found
