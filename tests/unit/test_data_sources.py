"""Record sources in their real formats: PubChem SDF.gz with CID tags, CID-SMILES.gz, CSV, SMI."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from rdkit import Chem

from acml_dist.data.shards import decode_npz, encode_npz
from acml_dist.data.sources import SourceSpec, detect_format, iter_records, iter_smiles_file

pytestmark = pytest.mark.unit


def write_pubchem_sdf(path: Path, items: list[tuple[int, str]]) -> None:
    with gzip.open(path, "wt") as fh:
        for cid, smi in items:
            mol = Chem.MolFromSmiles(smi)
            mol.SetProp("PUBCHEM_COMPOUND_CID", str(cid))
            mol.SetProp("PUBCHEM_IUPAC_NAME", "x")
            fh.write(Chem.MolToMolBlock(mol))
            fh.write(f"> <PUBCHEM_COMPOUND_CID>\n{cid}\n\n> <PUBCHEM_IUPAC_NAME>\nx\n\n$$$$\n")


def test_pubchem_sdf(tmp_path: Path) -> None:
    path = tmp_path / "Compound_000000001_000500000.sdf.gz"
    write_pubchem_sdf(path, [(2244, "CC(=O)Oc1ccccc1C(=O)O"), (702, "CCO")])
    assert detect_format(str(path)) == "sdf"
    recs = list(iter_smiles_file(str(path), id_prefix="pubchem"))
    assert [r[0] for r in recs] == ["pubchem_2244", "pubchem_702"]
    assert all(r[2] == "molblock" for r in recs)
    assert Chem.MolToSmiles(Chem.MolFromMolBlock(recs[1][1])) == "CCO"


def test_cid_smiles(tmp_path: Path) -> None:
    path = tmp_path / "CID-SMILES.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1\tCC(=O)OC(CC(=O)[O-])C[N+](C)(C)C\n2\tCCO\n\n")
    assert detect_format(str(path)) == "pubchem_smiles"
    recs = list(iter_smiles_file(str(path), id_prefix="pubchem"))
    assert recs[:2] == [
        ("pubchem_1", "CC(=O)OC(CC(=O)[O-])C[N+](C)(C)C", "smiles"),
        ("pubchem_2", "CCO", "smiles"),
    ]
    assert recs[2][1] == ""  # empty line kept as a record: it becomes a reject


def test_csv_columns_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "mols.csv"
    path.write_text("name,SMILES,y\na,CCO,1\nb,CCN,2\nc,CCC,3\n")
    spec = SourceSpec([str(path)], "auto", "smiles", "name", "my")
    assert list(iter_records(spec, limit=2)) == [("my_a", "CCO", "smiles"), ("my_b", "CCN", "smiles")]
    with pytest.raises(ValueError, match="column 'nope'"):
        list(iter_records(SourceSpec([str(path)], "csv", "nope")))
    # Excel's "CSV UTF-8" starts with a byte-order mark: the first column name must still match
    path.write_bytes("\ufeffSMILES,name\nCCO,a\n".encode())
    bom_spec = SourceSpec([str(path)], "auto", "smiles", "name")
    assert list(iter_records(bom_spec)) == [("mol_a", "CCO", "smiles")]


def test_smi_title_line_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "mols.smi"
    path.write_bytes(b"SMILES Name\r\nCCO ethanol\r\n\r\nCCN\r\n")
    assert list(iter_smiles_file(str(path))) == [
        ("mol_ethanol", "CCO", "smiles"),
        ("mol_2", "", "smiles"),  # an empty line is a record (rejected as empty), so the counts add up
        ("mol_3", "CCN", "smiles"),
    ]
    # without a title line the first line is a molecule
    path.write_text("CCO\nCCN\n")
    assert [r[1] for r in iter_smiles_file(str(path))] == ["CCO", "CCN"]


def test_folder_gives_unique_ids(tmp_path: Path) -> None:
    (tmp_path / "a.smi").write_text("CCO\nCCN x1\n")
    (tmp_path / "b.smi.gz").write_bytes(gzip.compress(b"CCC\n"))
    ids = [r[0] for r in iter_records(SourceSpec([str(tmp_path)], "auto", id_prefix="m"))]
    assert ids == ["m_a_0", "m_a_x1", "m_b_0"]


def test_shard_bytes_deterministic_and_readable() -> None:
    import numpy as np

    arrays = {"edge_index": np.zeros((2, 0), np.int32), "hu_x": np.ones((1, 2), np.uint8)}
    assert encode_npz(arrays) == encode_npz(arrays)
    np.testing.assert_array_equal(decode_npz(encode_npz(arrays))["hu_x"], arrays["hu_x"])


def test_npz_members_equal_np_save() -> None:
    import zipfile

    import numpy as np

    arrays = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "b": np.zeros((0, 9), np.uint8)}
    data = encode_npz(arrays)
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    for name, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr)
        assert zf.read(f"{name}.npy") == buf.getvalue()


def test_cxsmiles_in_smi_csv_tsv(tmp_path: Path) -> None:
    """A CXSMILES extension stays with its SMILES: in a .smi line (not taken for the id) and in CSV / TSV
    fields (quoted in CSV, since extensions hold commas)."""
    smi = tmp_path / "cx.smi"
    smi.write_text("CCC |^1:1| propyl\nCC=CC\t|t:1|\nc1ccccc1 |c:0,2,4| benzene 2\nCCO ethanol\nCC |^1:0\n")
    assert list(iter_smiles_file(str(smi), id_prefix="m")) == [
        ("m_propyl", "CCC |^1:1|", "smiles"),
        ("m_1", "CC=CC |t:1|", "smiles"),
        ("m_benzene 2", "c1ccccc1 |c:0,2,4|", "smiles"),
        ("m_ethanol", "CCO", "smiles"),
        ("m_4", "CC |^1:0", "smiles"),  # unclosed: the whole text, which then fails to parse
    ]
    csv_path = tmp_path / "cx.csv"
    csv_path.write_text('id,smiles\na,"c1ccccc1 |c:0,2,4|"\nb,CCC |^1:1|\n')
    assert [r[1] for r in iter_smiles_file(str(csv_path), id_column="id")] == [
        "c1ccccc1 |c:0,2,4|",
        "CCC |^1:1|",
    ]
    tsv = tmp_path / "cx.tsv"
    tsv.write_text("smiles\tid\nCC=CC |t:1|\tx\n")
    assert list(iter_smiles_file(str(tsv), id_column="id")) == [("mol_x", "CC=CC |t:1|", "smiles")]
