"""Molecule tables: the one reader for the files `acml finetune`, `acml evaluate`'s datasets and
`acml embed-smiles` take. CSV / TSV (gzipped too), Parquet, a .smi file (the corpus reader's rules) or an
SDF (one row per record, its data items as columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from acml_dist.data.sources import (
    SourceError,
    detect_format,
    iter_sdf_blocks,
    iter_smiles_file,
    match_column,
    sdf_data_items,
    sdf_mol_block,
)
from acml_dist.errors import DataError
from acml_dist.log import get_logger

log = get_logger("data")


def read_molecule_table(path: str | Path, smiles_column: str = "smiles", progress: bool = False):
    """A DataFrame of the file at `path`, its format from the name: `.parquet`; `.smi` (title line, ids,
    gzip, blank lines as the corpus reader reads them: one `smiles_column`); `.sdf` / `.sd` (`sdf_table`);
    `.tsv` / `.tab`; any other name reads as CSV (a UTF-8 byte-order mark is dropped by pandas).
    `progress`: a bar on stderr while an SDF is read (~2,600 ESOL records a second on a 2-core box)."""
    import pandas as pd

    path = str(path)
    if ".parquet" in Path(path).suffixes:
        return pd.read_parquet(path)
    try:
        fmt = detect_format(path)
    except SourceError:
        fmt = "csv"
    if fmt in ("smi", "pubchem_smiles"):
        smiles = [text for _, text, _ in iter_smiles_file(path, fmt, smiles_column) if text]
        return pd.DataFrame({smiles_column: smiles})
    if fmt == "sdf":
        return sdf_table(path, smiles_column, progress)
    return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")


def read_input_table(path: str | Path, smiles_column: str, prefix: str):
    """(frame, SMILES column as matched in any case) for a command that writes the input's columns beside
    its own `error` and `<prefix>*` columns (embed-smiles, predict). DataError when the SMILES column is not
    there, or when an input column would be overwritten by the output's."""
    table = read_molecule_table(path, smiles_column, progress=True)
    column = match_column(list(table.columns), smiles_column)
    if column is None:
        raise DataError(f"{path}: no column {smiles_column!r} (columns: {list(table.columns)})")
    clash = [c for c in table.columns if str(c) == "error" or str(c).startswith(prefix)]
    if clash:
        raise DataError(f"{path}: columns {clash} would be overwritten by the output's; rename them")
    return table, column


def sdf_table(path: str, smiles_column: str = "smiles", progress: bool = False):
    """One row per SDF record: its data items as columns (a column whose every value is a number is read
    as numbers) and, unless a data item of the first record is already named `smiles_column` (in any case),
    a `smiles_column` of SMILES RDKit writes from each mol block (stereo kept). A record RDKit cannot read
    keeps its row and fields with no SMILES, so the stage reading the table counts and lists it like an
    unreadable SMILES; the reasons are logged here."""
    import pandas as pd
    from tqdm.auto import tqdm

    rows: list[dict] = []
    failed: list[str] = []
    from_block: Optional[bool] = None
    label = f"{Path(path).name}: read"
    for lines in tqdm(iter_sdf_blocks(path), desc=label, unit="record", disable=not progress):
        row: dict = dict(sdf_data_items(lines))
        if from_block is None:
            from_block = match_column(list(row), smiles_column) is None
        if from_block:
            smiles, reason = _block_smiles(sdf_mol_block(lines))
            row[smiles_column] = smiles
            failed += [f"record {len(rows)}: {reason}"] if reason else []
        rows.append(row)
    if failed:  # numbered from 0, as the rows of the table and of a finetune run's invalid_rows.csv
        shown = "; ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
        log.warning("%s: %d of %d SDF records have a mol block RDKit cannot read, kept without SMILES: %s",
                    path, len(failed), len(rows), shown)  # fmt: skip
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if column == smiles_column:
            continue
        text = frame[column].mask(frame[column] == "")
        numbers = pd.to_numeric(text, errors="coerce")
        frame[column] = numbers if numbers.notna().sum() == text.notna().sum() else text
    return frame


def _block_smiles(block: str) -> tuple[Optional[str], Optional[str]]:
    """(SMILES, None) for a mol block RDKit reads, else (None, reason)."""
    from rdkit import Chem

    from acml_dist.chem.standardize import Reject, parse
    from acml_dist.config.checks import MAX_HEAVY_ATOMS_LIMIT

    mol = parse(block, "molblock")
    if isinstance(mol, Reject):
        return None, mol.reason
    if mol.GetNumAtoms() > MAX_HEAVY_ATOMS_LIMIT:  # RDKit's SMILES writer dies on ~20,000 atoms
        return None, f"too_many_atoms: {mol.GetNumAtoms()}"
    return Chem.MolToSmiles(mol), None
