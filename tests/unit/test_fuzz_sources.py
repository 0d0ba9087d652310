"""Fuzzing every reader of data/sources.py (hypothesis, derandomised): CSV with quoted fields, TSV, .smi and
.smi.gz with CXSMILES and names, empty lines, byte-order marks, non-UTF-8 bytes, truncated gzip, SDF with
broken records. A reader yields exactly one record per input record, in order, with the text and id that
were written, or stops with a SourceError naming the file; then every record ends written, rejected with a
reason, or counted as excluded (process_chunk's counts add up)."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest
from fuzz_molecules import FUZZ, HOSTILE, molecules, smiles_texts
from hypothesis import given
from hypothesis import strategies as st
from rdkit import Chem

from acml_dist.chem.standardize import Reject, StandardResult, standardize
from acml_dist.data.sources import SourceError, iter_smiles_file

pytestmark = pytest.mark.unit

# Field text: anything but NUL and lone carriage returns / line breaks where the format forbids them.
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
# A name starting with "|" would read as a CXSMILES extension (as RDKit reads it): not generated.
NAME = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), max_size=12).filter(
    lambda name: not name.startswith("|")
)
TOKEN = st.one_of(smiles_texts(max_atoms=10), st.text("CNOcnos()[]=#@+-1234%/\\.", min_size=1, max_size=15))


def _write(path: Path, data: bytes, gz: bool) -> None:
    path.write_bytes(gzip.compress(data) if gz else data)


@FUZZ
@given(
    rows=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=15),
    delimiter=st.sampled_from([",", "\t"]),
    bom=st.booleans(),
    gz=st.booleans(),
)
def test_csv_tsv_round_trip(tmp_path_factory, rows, delimiter, bom, gz) -> None:
    """Fields written by the csv module (quoted where they hold the delimiter, quotes or line breaks) come
    back as written, one record per row, ids from the id column or the row number."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(["ID", "Smiles"])
    writer.writerows(rows)
    path = tmp_path_factory.mktemp("t") / ("in.csv" if delimiter == "," else "in.tsv")
    _write(path, (("\ufeff" if bom else "") + buf.getvalue()).encode(), gz)
    recs = list(iter_smiles_file(str(path), id_column="id", id_prefix="m"))
    assert recs == [(f"m_{rid.strip() or n}", smi.strip(), "smiles") for n, (rid, smi) in enumerate(rows)]


@st.composite
def smi_lines(draw) -> tuple[str, str, str]:
    """(line, expected SMILES text, expected name) of one .smi line."""
    if draw(st.integers(0, 6)) == 0:
        return "", "", ""
    smi = draw(TOKEN)
    ext = draw(st.sampled_from(["", "", "|^1:0|", "|t:1|", "|(0,0,;1,1,)|", "|$R1;$|"]))
    name = draw(NAME) if draw(st.booleans()) else ""
    sep = draw(st.sampled_from([" ", "\t", "  "]))
    line = smi + (sep + ext if ext else "") + (sep + name if name else "")
    return line, smi + (" " + ext if ext else ""), name


@FUZZ
@given(lines=st.lists(smi_lines(), max_size=15), crlf=st.booleans(), bom=st.booleans(), gz=st.booleans())
def test_smi_round_trip(tmp_path_factory, lines, crlf, bom, gz) -> None:
    """A .smi line keeps its CXSMILES extension with the SMILES and its name as the id; empty lines are
    records (rejected later as empty), so record numbers and ids stay stable."""
    lines = [x for x in lines if x[1].split(" ")[0].lower() != "smiles"]  # not a title line
    text = ("\r\n" if crlf else "\n").join(x[0] for x in lines) + ("\n" if lines else "")
    path = tmp_path_factory.mktemp("s") / "in.smi"
    _write(path, (("\ufeff" if bom else "") + text).encode(), gz)
    recs = list(iter_smiles_file(str(path), id_prefix="m"))
    assert recs == [(f"m_{name or n}", smi, "smiles") for n, (_, smi, name) in enumerate(lines)]


@FUZZ
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["smi", "csv", "tsv", "pubchem_smiles", "sdf"]))
def test_arbitrary_bytes(tmp_path_factory, data: bytes, fmt: str) -> None:
    """Any bytes (non-UTF-8, NUL, lone CR) in any format: records whose text the standardiser accepts or
    rejects with a reason, or one SourceError; never another exception."""
    path = tmp_path_factory.mktemp("b") / "in.dat"
    path.write_bytes(data)
    try:
        recs = list(iter_smiles_file(str(path), fmt=fmt))
    except SourceError as exc:
        assert str(path) in str(exc)
        return
    for _, text, kind in recs:
        res = standardize(text, None, kind)
        assert isinstance(res, (StandardResult, Reject)) and (isinstance(res, StandardResult) or res.reason)


@FUZZ
@given(lines=st.lists(smi_lines(), min_size=30, max_size=60), cut=st.floats(0.05, 0.95))
def test_truncated_gzip_is_a_source_error(tmp_path_factory, lines, cut: float) -> None:
    """A .smi.gz cut short (an interrupted download): the records before the cut, then a SourceError that
    names the file; never a bare EOFError/zlib traceback, never a silently shortened input."""
    text = "\n".join(x[0] or "C" for x in lines) + "\n"
    packed = gzip.compress(text.encode())
    path = tmp_path_factory.mktemp("g") / "in.smi.gz"
    path.write_bytes(packed[: max(12, int(len(packed) * cut))])
    got = []
    with pytest.raises(SourceError, match="in.smi.gz"):
        for rec in iter_smiles_file(str(path)):
            got.append(rec)
    assert len(got) < len(lines)


@st.composite
def sdf_records(draw) -> tuple[str, bool]:
    """(record text without $$$$, intact?) : a mol block with an id tag, sometimes broken."""
    mol = draw(molecules(max_atoms=12, exotic=False))
    block = Chem.MolToMolBlock(mol) + "> <PUBCHEM_COMPOUND_CID>\n{cid}\n\n"
    damage = draw(st.sampled_from(["none", "none", "truncate", "counts", "garbage", "empty"]))
    lines = block.splitlines(keepends=True)
    if damage == "truncate":
        lines = lines[: draw(st.integers(1, max(1, len(lines) - 3)))]
    elif damage == "counts" and len(lines) > 3:
        lines[3] = "999999  1  0  0  0  0  0  0  0  0999 V2000\n"
    elif damage == "garbage":
        lines.insert(draw(st.integers(0, len(lines))), draw(ANY_TEXT).replace("$", "") + "\n")
    elif damage == "empty":
        lines = ["\n"]
    return "".join(lines), damage == "none"


@FUZZ
@given(records=st.lists(sdf_records(), min_size=1, max_size=8), final=st.booleans())
def test_sdf_with_broken_records(tmp_path_factory, records, final: bool) -> None:
    """One record per $$$$ block, in order, ids from the CID tag where it survived; every intact record
    parses to its molecule, every broken one is a reject with a reason or a valid molecule, never a crash."""
    texts = [text.replace("{cid}", str(1000 + k)) for k, (text, _) in enumerate(records)]
    body = "$$$$\n".join(texts) + ("$$$$\n" if final else "")
    path = tmp_path_factory.mktemp("d") / "in.sdf"
    path.write_text(body)
    recs = list(iter_smiles_file(str(path), id_prefix="p"))
    blocks = body.split("$$$$\n")
    expected = len(blocks) - (1 if not blocks[-1].strip() else 0)
    assert len(recs) == expected
    for k, ((rid, text, kind), (_, intact)) in enumerate(zip(recs, records)):
        assert kind == "molblock"
        res = standardize(text, None, "molblock")
        assert isinstance(res, StandardResult) or res.reason
        if intact:
            assert rid == f"p_{1000 + k}" and isinstance(res, StandardResult), (rid, res)


@FUZZ
@given(texts=st.lists(st.one_of(smiles_texts(max_atoms=14), st.sampled_from(HOSTILE)), max_size=25))
def test_every_record_ends_written_rejected_or_excluded(tmp_path_factory, texts: list[str]) -> None:
    """The featurisation of a chunk accounts for every record: accepted + rejected + excluded == read, and
    every reject has a reason."""
    from acml_dist.chem.standardize import inchikey_of
    from acml_dist.data.featurize_tasks import process_chunk

    records = [(f"m_{i}", t, "smiles") for i, t in enumerate(texts)]
    excluded = {k for k in (inchikey_of(t) for t in texts[::3]) if k}
    data = {"standardize": {"min_heavy_atoms": 2, "max_heavy_atoms": 60}, "split": "scaffold"}
    counts = process_chunk(0, 0, records, data, frozenset(excluded), str(tmp_path_factory.mktemp("w")), 2)
    assert counts["read"] == len(texts)
    assert counts["accepted"] + counts["rejected"] + counts["excluded"] == len(texts)
    assert sum(counts["reasons"].values()) == counts["rejected"] and all(counts["reasons"])
