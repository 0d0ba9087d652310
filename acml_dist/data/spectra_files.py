"""Readers of experimental spectrum files -> `SpectrumRecord`s (or `RecordReject`s with a reason).

- MGF (GNPS, MassBank/MoNA LC-MS exports) and MSP (NIST-style; MoNA / MassBank / GOLM GC-MS and LC-MS
  exports): parsed by matchms, one record at a time (the file is cut into records first, so a broken
  record becomes a reject and the records after it are still read);
- JCAMP-DX (`.jdx`, `.dx`, `.jcamp`; NMR and MS, PEAK TABLE / XYPOINTS / XYDATA, LINK blocks): parsed by
  the `jcamp` package; Hz axes are turned into ppm with `##.OBSERVE FREQUENCY`; the nucleus comes from
  `##.OBSERVE NUCLEUS`;
- NMRShiftDB-style SDF (`Spectrum 13C 0` = "shift;intensity[multiplicity];atom|..."): parsed by RDKit; the
  record's own structure gives the InChIKey.

A record carries what pairs it to a molecule: `inchikey`, `smiles` and/or `ident` (GNPS SPECTRUMID, MoNA /
MassBank accession, NMRShiftDB ID, JCAMP `##$ID` / `##TITLE`). Nothing here needs a dataset; pairing and
writing are in data/spectra_import.py."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

FORMATS = {
    ".mgf": "mgf",
    ".msp": "msp",
    ".jdx": "jcamp",
    ".dx": "jcamp",
    ".jcamp": "jcamp",
    ".sdf": "sdf",
    ".sd": "sdf",
}


@dataclass
class SpectrumRecord:
    source: str  # file name
    record_id: str  # "<file>#<n>" (n: 1-based record number in the file)
    kind: str  # "ms" | "nmr13c" | "nmr1h" | "nmr" (nucleus not given)
    x: np.ndarray  # m/z or ppm (float64)
    y: np.ndarray  # intensities (float64)
    continuous: bool = False  # a sampled trace (JCAMP XYDATA) rather than a peak list
    inchikey: Optional[str] = None
    smiles: Optional[str] = None
    ident: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordReject:
    source: str
    record_id: str
    reason: str


Record = Union[SpectrumRecord, RecordReject]


def detect_spectrum_format(path: str | os.PathLike) -> str:
    name = str(path).lower()
    for suffix in (".gz",):
        name = name.removesuffix(suffix)
    ext = os.path.splitext(name)[1]
    if ext not in FORMATS:
        raise ValueError(f"{path}: unknown spectrum file type {ext!r} (known: {sorted(FORMATS)})")
    return FORMATS[ext]


def _open_text(path: str | os.PathLike) -> io.TextIOBase:
    if str(path).endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _clean(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text.lower() not in ("n/a", "na", "none", "null", "nan") else None


def _ms_record(spectrum: Any, source: str, rid: str) -> Record:
    mz = np.asarray(spectrum.peaks.mz, dtype=np.float64)
    it = np.asarray(spectrum.peaks.intensities, dtype=np.float64)
    if mz.size == 0:
        return RecordReject(source, rid, "no peaks")
    if (it < 0).any() or not np.isfinite(mz).all() or not np.isfinite(it).all():
        return RecordReject(source, rid, "invalid peak values (negative or non-finite)")
    md = spectrum.metadata
    ident = next(
        (_clean(md.get(k)) for k in ("spectrum_id", "spectrumid", "db#", "accession") if _clean(md.get(k))),
        None,
    )
    return SpectrumRecord(
        source,
        rid,
        "ms",
        mz,
        it,
        inchikey=_clean(md.get("inchikey")),
        smiles=_clean(md.get("smiles")),
        ident=ident,
        meta={
            k: md.get(k) for k in ("compound_name", "precursor_mz", "ionmode", "instrument_type") if k in md
        },
    )


def _mgf_blocks(path: str | os.PathLike) -> Iterator[str]:
    block: list[str] | None = None
    with _open_text(path) as fh:
        for line in fh:
            tag = line.strip().upper()
            if tag == "BEGIN IONS":
                if block is not None:  # a record without END IONS: give what we have (it will be judged)
                    yield "".join(block)
                block = [line]
            elif block is not None:
                block.append(line)
                if tag == "END IONS":
                    yield "".join(block)
                    block = None
    if block is not None:
        yield "".join(block)


def _quiet_matchms() -> None:
    """matchms logs a warning per record for missing metadata (e.g. no precursor m/z in GC-MS)."""
    import logging

    logging.getLogger("matchms").setLevel(logging.ERROR)


def read_mgf(path: str | os.PathLike) -> Iterator[Record]:
    """Spectra of an MGF file (matchms + pyteomics), one record per BEGIN IONS ... END IONS block."""
    from matchms.importing import load_from_mgf

    _quiet_matchms()

    source = Path(path).name
    for n, block in enumerate(_mgf_blocks(path), 1):
        rid = f"{source}#{n}"
        if "END IONS" not in block.upper():
            yield RecordReject(source, rid, "record not terminated by END IONS")
            continue
        try:
            spectra = list(load_from_mgf(io.StringIO(block)))
        except Exception as exc:  # noqa: BLE001 - any parser failure is this record's reject
            yield RecordReject(source, rid, f"unparsable MGF record: {type(exc).__name__}: {exc}"[:200])
            continue
        yield (
            _ms_record(spectra[0], source, rid) if spectra else RecordReject(source, rid, "empty MGF record")
        )


def _msp_blocks(path: str | os.PathLike) -> Iterator[str]:
    """MSP records: blank-line separated blocks that start with a `Name:` line."""
    block: list[str] = []
    with _open_text(path) as fh:
        for line in fh:
            if not line.strip():
                if block:
                    yield "".join(block)
                    block = []
                continue
            if line.lower().startswith("name:") and block:
                yield "".join(block)
                block = []
            block.append(line)
    if block:
        yield "".join(block)


def read_msp(path: str | os.PathLike) -> Iterator[Record]:
    """Spectra of an MSP file (matchms), one record per block; the peak count must match `Num Peaks`."""
    from matchms.importing import load_from_msp

    _quiet_matchms()

    source = Path(path).name
    with tempfile.TemporaryDirectory(prefix="acml-msp-") as tmp:
        one = os.path.join(tmp, "record.msp")
        for n, block in enumerate(_msp_blocks(path), 1):
            rid = f"{source}#{n}"
            declared = re.search(r"^num peaks:\s*(\S+)", block, re.IGNORECASE | re.MULTILINE)
            if declared is None:
                yield RecordReject(source, rid, "no 'Num Peaks' line")
                continue
            with open(one, "w", encoding="utf-8") as fh:
                fh.write(block + "\n")
            try:
                spectra = list(load_from_msp(one))
            except Exception as exc:  # noqa: BLE001
                yield RecordReject(source, rid, f"unparsable MSP record: {type(exc).__name__}: {exc}"[:200])
                continue
            if len(spectra) != 1:
                yield RecordReject(source, rid, f"peak lines do not match 'Num Peaks: {declared.group(1)}'")
                continue
            yield _ms_record(spectra[0], source, rid)


NUCLEUS_KIND = {"13C": "nmr13c", "1H": "nmr1h"}


def _jcamp_block(d: dict[str, Any], source: str, rid: str, id_field: str) -> Record:
    dtype = str(d.get("data type", d.get("datatype", ""))).upper()
    nucleus = str(d.get(".observe nucleus", "")).replace("^", "").strip().upper()
    kind = (
        "ms"
        if "MASS" in dtype
        else NUCLEUS_KIND.get(
            nucleus.replace("C13", "13C").replace("H1", "1H"), "nmr" if "NMR" in dtype else ""
        )
    )
    if not kind:
        return RecordReject(source, rid, f"not an NMR or mass spectrum (DATA TYPE={dtype or '?'})")
    x = np.asarray(d.get("x", []), dtype=np.float64)
    y = np.asarray(d.get("y", []), dtype=np.float64)
    if x.size == 0 or x.size != y.size:
        return RecordReject(source, rid, f"no usable data table ({x.size} x values, {y.size} y values)")
    units = str(d.get("xunits", "")).upper()
    if kind.startswith("nmr") and units == "HZ":
        freq = d.get(".observe frequency")
        if not isinstance(freq, (int, float)) or freq <= 0:
            return RecordReject(source, rid, "x axis in Hz without ##.OBSERVE FREQUENCY")
        x = x / float(freq)
    elif kind.startswith("nmr") and units not in ("PPM", ""):
        return RecordReject(source, rid, f"unsupported NMR x units {units!r}")
    # XYDATA / XYPOINTS sample a trace; a PEAK TABLE (or DATA TYPE=... PEAK TABLE) lists peaks
    continuous = "peak table" not in d and "PEAK" not in dtype
    ident = _clean(d.get(id_field)) or _clean(d.get("$id")) or _clean(d.get("title"))
    return SpectrumRecord(
        source,
        rid,
        kind,
        x,
        y,
        continuous=continuous,
        inchikey=_clean(d.get("$inchikey")) or _clean(d.get("inchikey")),
        smiles=_clean(d.get("$smiles")) or _clean(d.get("smiles")),
        ident=ident,
        meta={"title": _clean(d.get("title")), "cas": _clean(d.get("cas registry no")), "nucleus": nucleus},
    )


def read_jcamp(path: str | os.PathLike, id_field: str = "$id") -> Iterator[Record]:
    """Spectra of a JCAMP-DX file (the `jcamp` package); a LINK file gives one record per child block.
    Pairing fields are the private labels `##$SMILES=`, `##$INCHIKEY=` and `id_field` (default `##$ID=`,
    then `##TITLE=`)."""
    import contextlib

    import jcamp

    source = Path(path).name
    try:
        with _open_text(path) as fh, contextlib.redirect_stdout(io.StringIO()):
            d = jcamp.read(fh)  # it prints its own warnings (X-check / Y-check): kept off stdout
    except Exception as exc:  # noqa: BLE001
        yield RecordReject(
            source, f"{source}#1", f"unparsable JCAMP-DX file: {type(exc).__name__}: {exc}"[:200]
        )
        return
    blocks = d.get("children") or [d]
    for n, block in enumerate(blocks, 1):
        rec = _jcamp_block(block, source, f"{source}#{n}", id_field.lower())
        if isinstance(rec, RecordReject) and d.get("children") and "not an NMR or mass" in rec.reason:
            continue  # structure / other blocks of a LINK file are not spectra: not rejects
        yield rec


_SDF_FIELD = re.compile(r"^Spectrum (13C|1H)\b.*", re.IGNORECASE)
_NUMBER = re.compile(r"^[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def parse_nmrshiftdb_field(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """'shift;intensity[multiplicity];atom|...' -> (shifts, intensities, atoms); ValueError when malformed.
    The intensity may carry a multiplicity letter (`0.0Q`); a missing intensity counts 1."""
    shifts, ints, atoms = [], [], []
    for part in (p.strip() for p in text.replace("\n", "").split("|")):
        if not part:
            continue
        fields = part.split(";")
        if len(fields) < 2:
            raise ValueError(f"peak {part!r} is not 'shift;intensity;atom'")
        shifts.append(float(fields[0]))
        m = _NUMBER.match(fields[1].strip())
        ints.append(float(m.group(0)) if m else 1.0)
        atoms.append(int(fields[2]) if len(fields) > 2 and fields[2].strip().lstrip("-").isdigit() else -1)
    if not shifts:
        raise ValueError("no peaks")
    y = np.asarray(ints, dtype=np.float64)
    if not (y > 0).any():  # NMRShiftDB writes 0.0 for unknown intensities: every peak counts 1
        y = np.ones_like(y)
    return np.asarray(shifts, np.float64), y, np.asarray(atoms, np.int64)


def read_nmrshiftdb_sdf(
    path: str | os.PathLike, nuclei: Sequence[str] = ("13C", "1H"), id_field: str = "nmrshiftdb2 ID"
) -> Iterator[Record]:
    """NMR spectra stored as SDF fields (NMRShiftDB2 style): one record per molecule and nucleus (the
    first `Spectrum <nucleus> <n>` field); the InChIKey comes from the record's structure (RDKit)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    source = Path(path).name
    import gzip

    with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as fh:
        supplier = Chem.ForwardSDMolSupplier(fh, sanitize=True, removeHs=False)
        for n, mol in enumerate(supplier, 1):
            rid = f"{source}#{n}"
            if mol is None:
                yield RecordReject(source, rid, "unparsable molecule block")
                continue
            props = mol.GetPropsAsDict(includePrivate=False, includeComputed=False)
            fields = sorted(k for k in props if _SDF_FIELD.match(k))
            if not fields:
                yield RecordReject(source, rid, "no 'Spectrum 13C|1H' field")
                continue
            try:
                inchikey = Chem.MolToInchiKey(mol) or None
            except Exception:  # noqa: BLE001 - RDKit's InChI layer refuses some structures
                inchikey = None
            ident = _clean(props.get(id_field)) or _clean(
                mol.GetProp("_Name") if mol.HasProp("_Name") else None
            )
            for nucleus in nuclei:
                mine = [k for k in fields if k.split()[1].upper() == nucleus.upper()]
                if not mine:
                    continue
                try:
                    x, y, atoms = parse_nmrshiftdb_field(str(props[mine[0]]))
                except ValueError as exc:
                    yield RecordReject(
                        source, f"{rid}:{nucleus}", f"malformed '{mine[0]}' field: {exc}"[:200]
                    )
                    continue
                yield SpectrumRecord(
                    source,
                    f"{rid}:{nucleus}",
                    NUCLEUS_KIND[nucleus],
                    x,
                    y,
                    inchikey=inchikey,
                    smiles=Chem.MolToSmiles(Chem.RemoveHs(mol)),
                    ident=ident,
                    meta={"field": mine[0], "atoms": atoms.tolist()},
                )


def read_spectra(path: str | os.PathLike, fmt: Optional[str] = None, **kwargs: Any) -> Iterator[Record]:
    """Records of one spectrum file of any supported format (by extension unless `fmt` is given)."""
    fmt = fmt or detect_spectrum_format(path)
    readers = {"mgf": read_mgf, "msp": read_msp, "jcamp": read_jcamp, "sdf": read_nmrshiftdb_sdf}
    if fmt not in readers:
        raise ValueError(f"unknown spectrum format {fmt!r} (known: {sorted(readers)})")
    if not Path(path).exists():
        raise FileNotFoundError(f"spectrum file {path} does not exist")
    return readers[fmt](path, **kwargs)
