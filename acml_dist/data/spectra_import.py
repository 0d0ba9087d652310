"""Experimental spectrum files -> a dataset's per-modality output (`modalities/<modality>/`, the layout of
data/modalities.py): read (data/spectra_files.py), pair each record with a molecule of the dataset by
InChIKey, SMILES (-> InChIKey) or id, bin it (chem/spectra.py), write chunks + manifest + rejects.

Counts add up: records = written + rejected, where rejects are broken records, records of another kind
(e.g. a 1H spectrum while importing 13C), records that match no molecule, and later records of a molecule
that already has one (the first record in file order wins)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

from acml_dist.chem.spectra import BinSpec, bin_peaks, pick_peaks
from acml_dist.data.modalities import (
    bins_dict,
    encode_chunk,
    iter_dataset_molecules,
    modality_dir,
    write_chunk,
    write_manifest,
)
from acml_dist.data.shards import atomic_write
from acml_dist.data.spectra_files import Record, RecordReject, SpectrumRecord, read_spectra

PAIR_BY = ("inchikey", "smiles", "id")


class MoleculeIndex:
    """Molecule keys of a dataset by InChIKey, by key and by source id."""

    def __init__(self, molecules: Iterable[dict[str, Any]]) -> None:
        self.by_inchikey: dict[str, str] = {}
        self.by_id: dict[str, str] = {}
        for m in molecules:
            if m.get("inchikey"):
                self.by_inchikey.setdefault(str(m["inchikey"]).upper(), m["key"])
            self.by_id.setdefault(str(m["key"]), m["key"])
            if m.get("source_id"):
                self.by_id.setdefault(str(m["source_id"]), m["key"])

    @classmethod
    def from_dataset(
        cls, root: str | Path, splits: Sequence[str] = ("train", "val", "test")
    ) -> MoleculeIndex:
        return cls(iter_dataset_molecules(root, splits))

    def match(self, rec: SpectrumRecord, pair_by: Sequence[str] = PAIR_BY) -> tuple[Optional[str], str]:
        """(key, "") for the first of `pair_by` that pairs the record, else (None, why not)."""
        tried = []
        for how in pair_by:
            if how == "inchikey" and rec.inchikey:
                tried.append("inchikey")
                key = self.by_inchikey.get(rec.inchikey.strip().upper())
                if key:
                    return key, ""
            elif how == "smiles" and rec.smiles:
                tried.append("smiles")
                ik = smiles_inchikey(rec.smiles)
                if ik is None:
                    return None, "unparsable SMILES"
                key = self.by_inchikey.get(ik)
                if key:
                    return key, ""
            elif how == "id" and rec.ident:
                tried.append("id")
                key = self.by_id.get(rec.ident.strip())
                if key:
                    return key, ""
        if not tried:
            return None, f"no identifier to pair by ({'/'.join(pair_by)})"
        return None, f"no molecule of the dataset matches ({'/'.join(tried)})"


def smiles_inchikey(smiles: str) -> Optional[str]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    try:
        return Chem.MolToInchiKey(mol) or None
    except Exception:  # noqa: BLE001
        return None


def record_peaks(rec: SpectrumRecord, rel_height: float = 0.05):
    """Peak list of a record: as given, or picked from a continuous trace."""
    if rec.continuous:
        return pick_peaks(rec.x, rec.y, rel_height)
    return rec.x, rec.y


class _Collected:
    """Records read so far: kept rows (key, spectrum, peaks), rejects (JSON lines) and counts."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, Any, Any]] = []
        self.rejects: list[str] = []
        self.reasons: dict[str, int] = {}
        self.seen: set[str] = set()
        self.read = self.out_of_range = 0

    def reject(self, rec: Record, reason: str, key: Optional[str] = None) -> None:
        line = {"source": rec.source, "id": rec.record_id, "key": key, "reason": reason}
        self.rejects.append(json.dumps(line, sort_keys=True))
        short = reason.split(":")[0]
        self.reasons[short] = self.reasons.get(short, 0) + 1

    def add(
        self, rec: Record, kind: str, index: MoleculeIndex, pair_by: Sequence[str], spec: BinSpec, rel: float
    ) -> None:
        self.read += 1
        if isinstance(rec, RecordReject):
            return self.reject(rec, rec.reason)
        if rec.kind != kind and not (kind == "nmr" and rec.kind.startswith("nmr")):
            return self.reject(rec, f"other spectrum kind: {rec.kind}")
        key, why = index.match(rec, pair_by)
        if key is None:
            return self.reject(rec, why)
        if key in self.seen:
            return self.reject(rec, "duplicate: molecule already has a spectrum", key)
        x, y = record_peaks(rec, rel)
        binned = bin_peaks(x, y, spec)
        if binned.n_binned == 0:
            return self.reject(rec, "no peak inside the bin range", key)
        self.seen.add(key)
        self.out_of_range += binned.n_out_of_range
        self.rows.append((key, binned.spectrum, x))


def import_spectra(
    files: Sequence[str | Path],
    root: str | Path,
    modality: str,
    spec: BinSpec,
    *,
    kind: Optional[str] = None,
    pair_by: Sequence[str] = PAIR_BY,
    index: Optional[MoleculeIndex] = None,
    chunk_size: int = 1000,
    rel_height: float = 0.05,
    reader_kwargs: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Read, pair, bin and write the spectra of `files` as `<root>/modalities/<modality>/`; the manifest.
    `kind` (default: the modality name) is the record kind kept: ms, nmr13c, nmr1h, or nmr (any nucleus)."""
    bad = [p for p in pair_by if p not in PAIR_BY]
    if bad or not pair_by:
        raise ValueError(f"pair_by must be a non-empty subset of {PAIR_BY}, got {list(pair_by)}")
    kind = kind or modality
    index = index or MoleculeIndex.from_dataset(root)
    got = _Collected()
    for path in files:
        for rec in read_spectra(path, **(reader_kwargs or {})):
            got.add(rec, kind, index, pair_by, spec, rel_height)
    rows, rejects, reasons = got.rows, got.rejects, got.reasons
    read, out_of_range = got.read, got.out_of_range
    out_dir = modality_dir(root, modality)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the old manifest goes first: a run killed while rewriting leaves no manifest that lies
    (out_dir / "manifest.json").unlink(missing_ok=True)
    for old in out_dir.glob("chunk-*.npz"):
        old.unlink()
    entries = []
    for c, start in enumerate(range(0, len(rows), chunk_size)):
        part = rows[start : start + chunk_size]
        data = encode_chunk([r[0] for r in part], [r[1] for r in part], [r[2] for r in part], spec.n_bins)
        entries.append(write_chunk(out_dir, c, data, len(part)))
    atomic_write(out_dir / "rejects.jsonl", "".join(r + "\n" for r in rejects).encode())
    manifest = {
        "modality": modality,
        "producer": {
            "kind": "measured",
            "files": [str(Path(f).resolve()) for f in files],
            "pair_by": list(pair_by),
            "record_kind": kind,
        },
        "bins": bins_dict(spec),
        "counts": {"records": read, "written": len(rows), "rejected": len(rejects)},
        "peaks_out_of_range": out_of_range,
        "reject_reasons": dict(sorted(reasons.items())),
        "chunks": entries,
        "complete": True,
    }
    if read != len(rows) + len(rejects):
        raise RuntimeError(f"counts do not add up: {manifest['counts']}")
    write_manifest(out_dir, manifest)
    return manifest


def import_spectra_job(cfg: Any) -> dict[str, Any]:
    """`acml import-spectra` (an ImportSpectraJob config): the manifest of the written modality."""
    from acml_dist.chem.spectra import spec_from_dict
    from acml_dist.data.shards import read_manifest as dataset_manifest
    from acml_dist.errors import InputError

    root = Path(cfg.shards or Path(cfg.shards_root) / cfg.name)
    if dataset_manifest(root) is None:
        raise FileNotFoundError(f"no featurised dataset at {root}: run `acml featurize` first")
    if not cfg.files:
        raise InputError("files=[...] names no spectrum file")
    kind = cfg.kind or cfg.modality
    if kind not in ("ms", "nmr13c", "nmr1h"):
        raise InputError(
            f"kind must be ms, nmr13c or nmr1h (got {kind!r}); set kind= for modality {cfg.modality!r}"
        )
    settings = {
        "n_bins": cfg.h1_bins,
        "low": cfg.h1_low,
        "high": cfg.h1_high,
        "mz_min": cfg.mz_min,
        "mz_max": cfg.mz_max,
        "resolution": cfg.mz_resolution,
    }
    try:
        spec = spec_from_dict(kind, settings)
        manifest = import_spectra(
            list(cfg.files),
            root,
            cfg.modality,
            spec,
            kind=kind,
            pair_by=list(cfg.pair_by),
            chunk_size=int(cfg.chunk_size),
            rel_height=float(cfg.peak_rel_height),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    c = manifest["counts"]
    print(
        f"{cfg.modality}: {c['records']} records, {c['written']} written, {c['rejected']} rejected "
        f"{manifest['reject_reasons']} -> {modality_dir(root, cfg.modality)}"
    )
    return manifest
