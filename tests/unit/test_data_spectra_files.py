"""Readers of experimental spectrum files on files written here in the real formats (MGF, MSP, JCAMP-DX,
NMRShiftDB SDF), broken records included; pairing, binning and the import's counts and reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from acml_dist.chem.spectra import ms_spec, nmr1h_spec, nmr13c_spec
from acml_dist.data.modalities import iter_modality, read_modality
from acml_dist.data.spectra_files import (
    RecordReject,
    SpectrumRecord,
    parse_nmrshiftdb_field,
    read_spectra,
)
from acml_dist.data.spectra_import import MoleculeIndex, import_spectra, smiles_inchikey

ETHANOL, BENZENE, ACETIC, TOLUENE = "CCO", "c1ccccc1", "CC(=O)O", "Cc1ccccc1"
IK = {s: smiles_inchikey(s) for s in (ETHANOL, BENZENE, ACETIC, TOLUENE)}


def index() -> MoleculeIndex:
    return MoleculeIndex(
        [
            {"key": "mol_1", "inchikey": IK[ETHANOL], "source_id": "1"},
            {"key": "mol_2", "inchikey": IK[BENZENE], "source_id": "2"},
            {"key": "mol_3", "inchikey": IK[ACETIC], "source_id": "3"},
            {"key": "mol_4", "inchikey": IK[TOLUENE], "source_id": "4"},
        ]
    )


MGF = f"""BEGIN IONS
PEPMASS=47.049
CHARGE=1+
SPECTRUMID=CCMSLIB00000000001
SMILES={ETHANOL}
INCHIKEY={IK[ETHANOL]}
29.0 100.0
31.0 250.0
45.0 80.0
END IONS

BEGIN IONS
PEPMASS=79.054
SPECTRUMID=CCMSLIB00000000002
SMILES={BENZENE}
51.0 20.0
78.0 100.0
END IONS

BEGIN IONS
PEPMASS=61.0
SPECTRUMID=CCMSLIB00000000003
SMILES=N/A
INCHIKEY=N/A
43.0 100.0
END IONS

BEGIN IONS
PEPMASS=93.07
SPECTRUMID=CCMSLIB00000000004
SMILES={TOLUENE}
91.0 not_a_number
END IONS

BEGIN IONS
PEPMASS=61.0
SPECTRUMID=CCMSLIB00000000005
SMILES={ACETIC}
43.0 100.0
"""

MSP = f"""Name: Ethanol
InChIKey: {IK[ETHANOL]}
SMILES: {ETHANOL}
DB#: MoNA000001
Num Peaks: 3
29 100; 31 999
45 300

Name: Acetic acid
DB#: MoNA000002
Comments: "SMILES={ACETIC}"
Num Peaks: 2
43 999
60 500

Name: Toluene, wrong count
InChIKey: {IK[TOLUENE]}
Num Peaks: 5
91 999
92 600

Name: Benzene, no count
InChIKey: {IK[BENZENE]}
78 999

Name: Unknown compound
InChIKey: XXXXXXXXXXXXXX-XXXXXXXXXX-N
Num Peaks: 1
55 100

Name: Mystery, nothing to pair by
Num Peaks: 1
41 100
"""


def jcamp_13c_peaks() -> str:
    return """##TITLE=ethanol 13C
##JCAMP-DX=5.01
##DATA TYPE=NMR PEAK TABLE
##.OBSERVE NUCLEUS=^13C
##.OBSERVE FREQUENCY=100.6
##XUNITS=PPM
##YUNITS=ARBITRARY UNITS
##$SMILES=CCO
##NPOINTS=2
##PEAK TABLE=(XY..XY)
18.1, 100.0; 58.3, 95.0
##END=
"""


def jcamp_1h_trace_in_hz(freq: float = 400.0) -> str:
    x = np.linspace(0, 12 * freq, 2401)  # Hz
    ppm = x / freq
    y = 1000 / (1 + ((ppm - 1.22) / 0.01) ** 2) + 700 / (1 + ((ppm - 3.69) / 0.01) ** 2)
    lines = [f"{a:.3f} {b:.3f}" for a, b in zip(x, y)]
    return (
        "##TITLE=ethanol 1H\n##JCAMP-DX=5.01\n##DATA TYPE=NMR SPECTRUM\n##.OBSERVE NUCLEUS=^1H\n"
        f"##.OBSERVE FREQUENCY={freq}\n##XUNITS=HZ\n##YUNITS=ARBITRARY UNITS\n##$INCHIKEY={IK[ETHANOL]}\n"
        f"##NPOINTS={len(x)}\n##XYPOINTS=(XY..XY)\n" + "\n".join(lines) + "\n##END=\n"
    )


def jcamp_hz_without_frequency() -> str:
    return (
        "##TITLE=broken\n##JCAMP-DX=5.01\n##DATA TYPE=NMR SPECTRUM\n##.OBSERVE NUCLEUS=^1H\n##XUNITS=HZ\n"
        "##$ID=2\n##NPOINTS=2\n##XYPOINTS=(XY..XY)\n100.0 1.0\n200.0 2.0\n##END=\n"
    )


def nmrshiftdb_sdf(path: Path) -> None:
    from rdkit import Chem

    def block(smiles: str, fields: dict[str, str]) -> str:
        mol = Chem.MolFromSmiles(smiles)
        text = Chem.MolToMolBlock(mol)
        for k, v in fields.items():
            text += f"> <{k}>\n{v}\n\n"
        return text + "$$$$\n"

    broken = "broken\n  RDKit\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nnonsense\n$$$$\n"
    path.write_text(
        block(
            TOLUENE,
            {
                "nmrshiftdb2 ID": "10",
                "Spectrum 13C 0": "21.4;0.0Q;0|137.8;0.0S;1|129.0;0.0D;2|"
                "128.2;0.0D;3|125.3;0.0D;4|128.2;0.0D;5|129.0;0.0D;6|",
                "Spectrum 1H 0": "2.34;3.0;7|7.17;5.0;8|",
            },
        )
        + block(ACETIC, {"nmrshiftdb2 ID": "11", "Spectrum 13C 0": "20.8;0.0Q;0|garbage|"})
        + broken
        + block(BENZENE, {"nmrshiftdb2 ID": "12", "Solvent": "CDCl3"})
    )


def test_mgf_records_and_broken_ones(tmp_path: Path) -> None:
    path = tmp_path / "gnps.mgf"
    path.write_text(MGF)
    recs = list(read_spectra(path))
    assert len(recs) == 5
    ok = [r for r in recs if isinstance(r, SpectrumRecord)]
    bad = [r for r in recs if isinstance(r, RecordReject)]
    assert [r.ident for r in ok] == ["CCMSLIB00000000001", "CCMSLIB00000000002", "CCMSLIB00000000003"]
    assert ok[0].kind == "ms" and ok[0].x.tolist() == [29.0, 31.0, 45.0] and ok[0].inchikey == IK[ETHANOL]
    assert ok[2].smiles is None and ok[2].inchikey is None  # N/A is no identifier
    assert [r.record_id for r in bad] == ["gnps.mgf#4", "gnps.mgf#5"]
    assert "unparsable MGF record" in bad[0].reason and "END IONS" in bad[1].reason


def test_msp_records_and_broken_ones(tmp_path: Path) -> None:
    path = tmp_path / "mona.msp"
    path.write_text(MSP)
    recs = list(read_spectra(path))
    assert len(recs) == 6
    eth, acetic, wrong, nocount, unknown, mystery = recs
    assert isinstance(eth, SpectrumRecord) and eth.x.tolist() == [29.0, 31.0, 45.0]
    assert eth.y.tolist() == [100.0, 999.0, 300.0] and eth.inchikey == IK[ETHANOL]
    assert isinstance(acetic, SpectrumRecord) and acetic.smiles == ACETIC  # from the MoNA comment
    assert isinstance(wrong, RecordReject) and "Num Peaks: 5" in wrong.reason
    assert isinstance(nocount, RecordReject) and nocount.reason == "no 'Num Peaks' line"
    assert isinstance(unknown, SpectrumRecord) and isinstance(mystery, SpectrumRecord)
    assert (mystery.inchikey, mystery.smiles, mystery.ident) == (None, None, None)


def test_jcamp_peak_table_trace_in_hz_and_broken(tmp_path: Path) -> None:
    (tmp_path / "c13.jdx").write_text(jcamp_13c_peaks())
    (tmp_path / "h1.dx").write_text(jcamp_1h_trace_in_hz())
    (tmp_path / "bad.jdx").write_text(jcamp_hz_without_frequency())
    (tmp_path / "junk.jdx").write_text("this is not JCAMP\n")
    [c13] = list(read_spectra(tmp_path / "c13.jdx"))
    assert c13.kind == "nmr13c" and c13.x.tolist() == [18.1, 58.3] and c13.smiles == "CCO"
    assert not c13.continuous
    [h1] = list(read_spectra(tmp_path / "h1.dx"))
    assert h1.kind == "nmr1h" and h1.continuous and h1.x.max() == pytest.approx(12.0)  # Hz -> ppm
    [bad] = list(read_spectra(tmp_path / "bad.jdx"))
    assert isinstance(bad, RecordReject) and "OBSERVE FREQUENCY" in bad.reason
    [junk] = list(read_spectra(tmp_path / "junk.jdx"))
    assert isinstance(junk, RecordReject)


def test_nmrshiftdb_sdf_fields_and_broken_records(tmp_path: Path) -> None:
    path = tmp_path / "nmrshiftdb2.sdf"
    nmrshiftdb_sdf(path)
    recs = list(read_spectra(path))
    kinds = [(r.record_id, getattr(r, "kind", None), getattr(r, "reason", None)) for r in recs]
    assert [k[0] for k in kinds] == [
        "nmrshiftdb2.sdf#1:13C",
        "nmrshiftdb2.sdf#1:1H",
        "nmrshiftdb2.sdf#2:13C",
        "nmrshiftdb2.sdf#3",
        "nmrshiftdb2.sdf#4",
    ]
    tol13, tol1h = recs[0], recs[1]
    assert tol13.kind == "nmr13c" and tol13.inchikey == IK[TOLUENE] and tol13.ident == "10"
    assert tol13.x.tolist() == [21.4, 137.8, 129.0, 128.2, 125.3, 128.2, 129.0]
    assert tol13.y.tolist() == [1.0] * 7  # NMRShiftDB's 0.0 intensities: each peak counts 1
    assert tol1h.y.tolist() == [3.0, 5.0]
    assert "malformed 'Spectrum 13C 0' field" in recs[2].reason
    assert recs[3].reason == "unparsable molecule block"
    assert recs[4].reason == "no 'Spectrum 13C|1H' field"
    with pytest.raises(ValueError):
        parse_nmrshiftdb_field("")


def test_import_pairs_bins_and_counts_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "gnps.mgf").write_text(MGF)
    (tmp_path / "mona.msp").write_text(MSP)
    root = tmp_path / "dataset"
    m = import_spectra(
        [tmp_path / "gnps.mgf", tmp_path / "mona.msp"], root, "ms", ms_spec(0, 200, 1.0), index=index()
    )
    c = m["counts"]
    assert c == {"records": 11, "written": 3, "rejected": 8}
    assert c["records"] == c["written"] + c["rejected"]
    assert m["reject_reasons"] == {
        "duplicate": 1,  # ethanol again in the MSP: the MGF's record wins
        "no 'Num Peaks' line": 1,
        "no identifier to pair by (inchikey/smiles/id)": 1,
        "no molecule of the dataset matches (id)": 1,  # a GNPS id not in the dataset
        "no molecule of the dataset matches (inchikey)": 1,
        "peak lines do not match 'Num Peaks": 1,
        "record not terminated by END IONS": 1,
        "unparsable MGF record": 1,
    }
    spectra = read_modality(root, "ms")
    assert sorted(spectra) == ["mol_1", "mol_2", "mol_3"]
    eth = spectra["mol_1"]
    assert eth.shape == (200,) and eth.dtype == np.float32
    assert eth[31] == pytest.approx(1.0) and eth[29] == pytest.approx(0.4) and eth[45] == pytest.approx(0.32)
    rejects = [json.loads(line) for line in (root / "modalities/ms/rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 8 and all(r["reason"] for r in rejects)
    peaks = {r["key"]: r["peaks"].tolist() for r in iter_modality(root, "ms")}
    assert peaks["mol_3"] == [43.0, 60.0]


def test_import_nmr_from_jcamp_and_sdf(tmp_path: Path) -> None:
    (tmp_path / "c13.jdx").write_text(jcamp_13c_peaks())
    (tmp_path / "h1.dx").write_text(jcamp_1h_trace_in_hz())
    nmrshiftdb_sdf(tmp_path / "shifts.sdf")
    files = [tmp_path / "c13.jdx", tmp_path / "h1.dx", tmp_path / "shifts.sdf"]
    root = tmp_path / "dataset"
    m13 = import_spectra(files, root, "nmr13c", nmr13c_spec(), index=index())
    assert m13["counts"] == {"records": 7, "written": 2, "rejected": 5}
    assert m13["reject_reasons"]["other spectrum kind"] == 2  # the two 1H spectra
    c13 = read_modality(root, "nmr13c")
    assert np.flatnonzero(c13["mol_1"]).tolist() == [681, 1083]  # 18.1 and 58.3 ppm
    assert np.flatnonzero(c13["mol_4"]).size == 5  # toluene: 7 carbons, 5 distinct shifts
    m1 = import_spectra(files, root, "nmr1h", nmr1h_spec(), index=index())
    assert m1["counts"]["written"] == 2
    h1 = read_modality(root, "nmr1h")
    assert sorted(np.flatnonzero(h1["mol_1"]).tolist()) == [122, 369]  # picked from the Hz trace
    assert h1["mol_4"][717] == pytest.approx(1.0) and h1["mol_4"][234] == pytest.approx(0.6)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown spectrum file type"):
        read_spectra(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        read_spectra(tmp_path / "missing.mgf")
