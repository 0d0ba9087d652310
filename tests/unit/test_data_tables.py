"""The one molecule-table reader (`acml finetune`, `acml evaluate`'s datasets, `acml embed-smiles`): SDF
records with their data items, a record RDKit refuses kept with its fields, Parquet and .smi."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acml_dist.data.tables import read_molecule_table

pytestmark = pytest.mark.unit

# A nitrogen with four bonds and no charge: RDKit reads the connection table but refuses to sanitise it.
BROKEN = """broken
  hand-written

  5  4  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 N   0  0  0  0  0  0  0  0  0  0  0  0
    1.5000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
   -1.5000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    0.0000    1.5000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    0.0000   -1.5000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  1  3  1  0
  1  4  1  0
  1  5  1  0
M  END
>  <logS>  (4)
3.5

> <name>
bad one

$$$$
"""


def _write_sdf(path: Path, gzipped: bool = False) -> Path:
    from rdkit import Chem

    text = []
    for i, smiles in enumerate(["C[C@H](N)O", "c1ccccc1", "CCO", "CC(=O)O"]):
        mol = Chem.MolFromSmiles(smiles)
        block = Chem.MolToMolBlock(mol)
        logs = "" if i == 2 else f"{i * 0.5}"  # a record with an empty value: a missing label
        text.append(f"{block}> <logS>\n{logs}\n\n> <name>\nm{i}\nsecond line\n\n$$$$\n")
    text.insert(3, BROKEN)
    data = "".join(text)
    if gzipped:
        with gzip.open(path, "wt") as fh:
            fh.write(data)
    else:
        path.write_text(data)
    return path


@pytest.mark.parametrize("gzipped", [False, True])
def test_an_sdf_reads_as_one_row_per_record_with_its_data_items(tmp_path, gzipped, caplog):
    path = _write_sdf(tmp_path / ("m.sdf.gz" if gzipped else "m.sdf"), gzipped)
    with caplog.at_level(logging.WARNING, logger="acml.data"):
        frame = read_molecule_table(path, "smiles")
    assert len(frame) == 5 and list(frame.columns) == ["logS", "name", "smiles"]
    assert frame["smiles"].iloc[0] == "C[C@H](N)O"  # the mol block's stereo kept
    assert frame["logS"].dtype == np.float64 and np.isnan(frame["logS"].iloc[2])
    assert frame["name"].iloc[1] == "m1\nsecond line"
    # the record RDKit refuses keeps its row and its fields, with no SMILES, and is named in the log
    assert pd.isna(frame["smiles"].iloc[3]) and frame["logS"].iloc[3] == 3.5
    assert frame["name"].iloc[3] == "bad one"
    assert "1 of 5 SDF records" in caplog.text and "record 3: invalid_molblock" in caplog.text


def test_an_sdf_smiles_data_item_is_used_when_it_is_the_smiles_column(tmp_path):
    path = tmp_path / "with_smiles.sdf"
    from rdkit import Chem

    block = Chem.MolToMolBlock(Chem.MolFromSmiles("CCN"))
    path.write_text(f"{block}> <SMILES>\nCCN\n\n> <y>\n1.0\n\n$$$$\n")
    frame = read_molecule_table(path, "smiles")
    assert list(frame.columns) == ["SMILES", "y"] and frame["SMILES"].tolist() == ["CCN"]


def test_finetune_reads_an_sdf_and_counts_the_record_it_cannot_read(tmp_path):
    from acml_dist.config import load_config
    from acml_dist.evaluate.labelled import featurize_labelled, read_labelled_frame

    path = _write_sdf(tmp_path / "m.sdf")
    cfg = load_config("finetune", [f"data.path={path}"])  # no targets given: the numeric data items
    frame, smiles_column, targets, task = read_labelled_frame(cfg.data)
    assert (smiles_column, targets, task) == ("smiles", ["logS"], "regression")
    labelled = featurize_labelled(frame, smiles_column, targets, task, "m", "ogb", cfg.data.standardize)
    assert len(labelled.smiles) == 4 and [r["row"] for r in labelled.invalid] == [3]
    assert labelled.invalid[0]["reason"] == "missing" and labelled.source_rows == [0, 1, 2, 4]


def test_parquet_and_smi_tables(tmp_path):
    pd.DataFrame({"Smiles": ["CCO", "CCN"], "y": [1.0, 2.0]}).to_parquet(tmp_path / "t.parquet")
    assert read_molecule_table(tmp_path / "t.parquet").columns.tolist() == ["Smiles", "y"]
    (tmp_path / "t.smi").write_text("smiles id\nCCO 1\n\nCCN 2\n")
    assert read_molecule_table(tmp_path / "t.smi").to_dict("list") == {"smiles": ["CCO", "CCN"]}
