"""Record sources: SMILES / CSV / TSV / SDF files (gzipped or not), PubChem CID-SMILES and Compound SDF.

Everything streams: a record is `(source_id, text, fmt)` where fmt is "smiles" or "molblock"; the
featuriser parses `text`. Readers never hold a file in memory."""

from __future__ import annotations

import csv
import glob
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from acml_dist.errors import InputError

Record = tuple[str, str, str]  # (source id, text, "smiles" | "molblock")


class SourceError(InputError, ValueError):
    """An input file whose format or columns cannot be read as configured."""


@dataclass
class SourceSpec:
    paths: list[str]  # files, folders or globs, read in this order
    format: str = "auto"  # auto | smi | csv | tsv | sdf | pubchem_smiles
    smiles_column: str = "smiles"
    id_column: Optional[str] = None
    id_prefix: str = "mol"


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Text handle on a plain or gzipped file (by magic bytes, not by name); a UTF-8 byte-order mark (Excel's
    CSV export) is dropped so the first column name reads as written."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def detect_format(path: str) -> str:
    name = os.path.basename(path).lower()
    for suffix in (".gz", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.startswith("cid-smiles"):
        return "pubchem_smiles"
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    if ext in ("sdf", "sd", "mol"):
        return "sdf"
    if ext in ("csv",):
        return "csv"
    if ext in ("tsv", "tab"):
        return "tsv"
    if ext in ("smi", "smiles", "ism", "txt"):
        return "smi"
    raise SourceError(f"cannot tell the format of {path!r} from its name; set data.format=smi|csv|tsv|sdf")


def expand_paths(path: str) -> list[str]:
    """A file, a folder (every file inside, sorted) or a glob -> sorted list of files."""
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    elif p.exists():
        files = [str(p)]
    else:
        files = sorted(glob.glob(path, recursive=True))
    if not files:
        raise FileNotFoundError(f"no input files at {path!r}")
    return files


def iter_smiles_file(
    path: str,
    fmt: str = "auto",
    smiles_column: str = "smiles",
    id_column: Optional[str] = None,
    id_prefix: str = "mol",
) -> Iterator[Record]:
    """Records of one file. Ids: the id column / PubChem CID / SMI second field, else `<prefix>_<n>` with
    n the 0-based record number in the file (empty lines count, so ids stay stable). A .smi file's first
    line is a title, not a record, when its first field is the SMILES column name (`smiles`, any case)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    n = 0
    try:
        for n, record in enumerate(_iter_file(path, fmt, smiles_column, id_column, id_prefix), 1):  # noqa: B007
            yield record
    except (EOFError, gzip.BadGzipFile, zlib.error, csv.Error) as exc:
        # A truncated or corrupt file (an interrupted download): stop with its name, never a bare traceback
        # nor a silently shortened input.
        raise SourceError(f"{path}: unreadable after record {n}: {exc} (truncated or corrupt?)") from None


def _iter_file(
    path: str, fmt: str, smiles_column: str, id_column: Optional[str], id_prefix: str
) -> Iterator[Record]:
    if fmt == "sdf":
        yield from _iter_sdf(path, id_column or "PUBCHEM_COMPOUND_CID", id_prefix)
        return
    with open_text(path) as fh:
        if fmt in ("csv", "tsv"):
            delimiter = "," if fmt == "csv" else "\t"
            yield from _iter_table(path, fh, delimiter, smiles_column, id_column, id_prefix)
            return
        for n, line in enumerate(fh):
            line = line.rstrip("\r\n")
            if fmt == "pubchem_smiles":  # CID<TAB>SMILES
                cid, _, smi = line.partition("\t")
                yield (
                    f"{id_prefix}_{cid.strip()}" if cid.strip() else f"{id_prefix}_{n}",
                    smi.strip(),
                    "smiles",
                )
            else:  # .smi: SMILES, its optional CXSMILES extension, then an optional id
                smi, name = split_smiles_line(line)
                if n == 0 and smi.lower() == smiles_column.lower():
                    continue  # a title line ("SMILES Name"), not a molecule
                yield (f"{id_prefix}_{name or n}", smi, "smiles")


def split_smiles_line(line: str) -> tuple[str, str]:
    """A .smi line `SMILES [|extension|] [name]` -> (SMILES with its CXSMILES extension, name). The
    extension starts with the first field after the SMILES that begins with '|' and ends at the next '|';
    an extension never closed stays with the SMILES, whose parse then fails with a reason."""
    parts = line.split(None, 1)
    if not parts:
        return "", ""
    smi, rest = parts[0], parts[1].strip() if len(parts) > 1 else ""
    if rest.startswith("|"):
        end = rest.find("|", 1)
        if end < 0:
            return line.strip(), ""
        smi, rest = f"{smi} {rest[: end + 1]}", rest[end + 1 :].strip()
    return smi, rest


def match_column(columns: list, name: str) -> Optional[str]:
    """The column called `name`: exactly, else the one column of that name in any case or with spaces around
    it (`SMILES` for `smiles`); None when there is none or more than one. Every table reader asks here."""
    if name in columns:
        return name
    same = [c for c in columns if str(c).strip().lower() == name.strip().lower()]
    return same[0] if len(same) == 1 else None


def _iter_table(
    path: str, fh, delimiter: str, smiles_column: str, id_column: Optional[str], prefix: str
) -> Iterator[Record]:
    reader = csv.reader(fh, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    smiles_name = match_column(header, smiles_column)
    if smiles_name is None:
        raise SourceError(f"{path}: column {smiles_column!r} not in header {header}; set data.smiles_column")
    s_idx = header.index(smiles_name)
    id_name = match_column(header, id_column) if id_column else None
    i_idx = header.index(id_name) if id_name is not None else None
    if id_column and i_idx is None:
        raise SourceError(f"{path}: id column {id_column!r} not in header {header}; set data.id_column")
    for n, row in enumerate(reader):
        smi = row[s_idx].strip() if len(row) > s_idx else ""
        rid = row[i_idx].strip() if i_idx is not None and len(row) > i_idx and row[i_idx].strip() else str(n)
        yield (f"{prefix}_{rid}", smi, "smiles")


def _iter_sdf(path: str, id_tag: str, prefix: str) -> Iterator[Record]:
    """SDF records as raw text (the worker parses them); id from the `id_tag` data item."""
    for n, lines in enumerate(iter_sdf_blocks(path)):
        yield _sdf_record(lines, id_tag, prefix, n)


def iter_sdf_blocks(path: str) -> Iterator[list[str]]:
    """The lines of each record of an SDF (plain or gzipped), `$$$$` dropped; a blank tail is no record."""
    with open_text(path) as fh:
        lines: list[str] = []
        for line in fh:
            if line.startswith("$$$$"):
                yield lines
                lines = []
            else:
                lines.append(line)
        if any(x.strip() for x in lines):
            yield lines


def sdf_mol_block(lines: list[str]) -> str:
    """The mol block of one SDF record: its lines up to `M  END` (all of them when it has none)."""
    end = next((i for i, line in enumerate(lines) if line.startswith("M  END")), len(lines) - 1)
    return "".join(lines[: end + 1])


def sdf_data_items(lines: list[str]) -> dict[str, str]:
    """{name: value} of one SDF record's data items (`> <NAME>` then value lines up to a blank line), read
    from the text, so a record whose mol block RDKit refuses keeps its fields."""
    end = next((i for i, line in enumerate(lines) if line.startswith("M  END")), 2)
    items: dict[str, str] = {}
    name, values = None, []
    for line in lines[end + 1 :]:
        header = re.match(r">.*?<([^>]*)>", line) if name is None else None
        if header:
            name, values = header.group(1), []
        elif name is not None and line.strip():
            values.append(line.rstrip("\r\n"))
        elif name is not None:
            items[name], name = "\n".join(values), None
    if name is not None:
        items[name] = "\n".join(values)
    return items


def _sdf_record(lines: list[str], id_tag: str, prefix: str, n: int) -> Record:
    rid = str(n)
    tag = f"<{id_tag}>"
    for i, line in enumerate(lines):
        if line.startswith(">") and tag in line and i + 1 < len(lines):
            rid = lines[i + 1].strip() or rid
            break
    return (f"{prefix}_{rid}", "".join(lines), "molblock")


def source_files(spec: SourceSpec) -> list[str]:
    return [f for p in spec.paths for f in expand_paths(p)]


def check_sources(spec: SourceSpec, files: list[str]) -> None:
    """Read each file's first record, so a wrong format or column fails before any work starts rather than
    midway through a corpus (SourceError naming the file)."""
    for path in files:
        next(iter_smiles_file(path, spec.format, spec.smiles_column, spec.id_column, spec.id_prefix), None)


def iter_records(spec: SourceSpec, limit: Optional[int] = None) -> Iterator[Record]:
    """Records of every file of a source in order, at most `limit`. With several files, record-number ids
    carry the file's stem (`moses_train_12`) so they stay unique."""
    count = 0
    files = source_files(spec)
    for path in files:
        prefix = spec.id_prefix
        if len(files) > 1:
            prefix = f"{prefix}_{sanitize_key(os.path.basename(path).split('.')[0])}"
        for rec in iter_smiles_file(path, spec.format, spec.smiles_column, spec.id_column, prefix):
            if limit is not None and count >= limit:
                return
            yield rec
            count += 1


def sanitize_key(text: str) -> str:
    """A WebDataset key: no '.', '/', whitespace (webdataset splits keys on the first '.')."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
