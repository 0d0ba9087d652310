"""Teachers in the MLflow registry (real SQLite store): log, fetch by version or alias, same weights."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from acml_dist.config.teachers import TeacherConfig
from acml_dist.teachers import TeacherError, load_teacher
from acml_dist.teachers.registry import log_teacher, registered_hash

pytestmark = pytest.mark.integration


def _tiny_bert(path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "c", "C", "O", "N", "(", ")", "=", "1", ">>"]
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast.from_pretrained(path, do_lower_case=False).save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertModel(cfg).save_pretrained(path)
    return path


def test_register_and_fetch_teachers(mlflow_store, tmp_path):
    import mlflow

    smiles = ["CCO", "c1ccccc1O", "CC(=O)N"]
    lm = load_teacher(
        "tinylm",
        TeacherConfig(kind="smiles_lm", path=str(_tiny_bert(tmp_path / "bert")), params={"template": "{}>>"}),
    )
    v1 = log_teacher(lm, alias="champion")
    assert v1 == "1"
    fetched = load_teacher("tinylm", TeacherConfig(path="models:/acml-teacher-tinylm@champion", batch_size=2))
    assert (fetched.kind, fetched.dim, fetched.template) == ("smiles_lm", 16, "{}>>")
    assert fetched.weights_hash() == lm.weights_hash() and fetched.batch_size == 2
    torch.testing.assert_close(fetched.encode_smiles(smiles), lm.encode_smiles(smiles))
    tags = registered_hash("models:/acml-teacher-tinylm/1")
    assert tags["weights_hash"] == lm.weights_hash() and tags["dim"] == "16"
    # Nothing pickled in the registered teacher: a loader_module pyfunc over teacher.json + weights.
    from pathlib import Path

    local = Path(mlflow.artifacts.download_artifacts("models:/acml-teacher-tinylm/1"))
    assert not list(local.rglob("*.pkl")), sorted(str(p) for p in local.rglob("*"))
    assert "loader_module: acml_dist.teachers.pyfunc" in (local / "MLmodel").read_text()
    # The registered model is also a pyfunc: DataFrame of SMILES -> embeddings.
    pyfunc = mlflow.pyfunc.load_model("models:/acml-teacher-tinylm/1")
    out = pyfunc.predict(pd.DataFrame({"smiles": smiles}))
    assert out.shape == (3, 16)

    # A module teacher (state dict) and a weightless one round-trip too.
    nmr = load_teacher("c13", TeacherConfig(kind="cress_nmr13c", params={"random_init": True}))
    log_teacher(nmr)
    back = load_teacher("c13", TeacherConfig(path="models:/acml-teacher-c13/1"))
    assert back.kind == "cress_nmr13c" and back.weights_hash() == nmr.weights_hash()
    fp = load_teacher("morgan", TeacherConfig(kind="fingerprint", params={"n_bits": 128, "counts": True}))
    log_teacher(fp)
    fp_back = load_teacher("morgan", TeacherConfig(path="models:/acml-teacher-morgan/1"))
    assert fp_back.weights_hash() == fp.weights_hash() and fp_back.dim == 128

    with pytest.raises(TeacherError, match="cannot fetch teacher"):
        load_teacher("nope", TeacherConfig(path="models:/acml-teacher-nope/1"))
