"""Published architectures: exact shapes, and strict checkpoint loaders that list every mismatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acml_dist.config.teachers import TeacherConfig
from acml_dist.teachers import TeacherError, load_teacher
from acml_dist.teachers.checkpoint import CheckpointMismatchError, load_strict
from acml_dist.teachers.published import (
    bin_nmr13c,
    build_cress_nmr,
    build_cress_smiles,
    build_img2mol,
    cress_smiles_rename,
    image_tensor,
)

pytestmark = pytest.mark.unit

TINY_ROBERTA = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}


def test_published_shapes_are_exact():
    with torch.device("meta"):  # shapes only: no 200M-parameter allocation
        smi, img, nmr = build_cress_smiles(), build_img2mol(), build_cress_nmr()
    s = smi.state_dict()
    assert s["smiles_model.embeddings.word_embeddings.weight"].shape == (181, 768)
    assert s["smiles_model.embeddings.position_embeddings.weight"].shape == (505, 768)
    assert s["smiles_model.embeddings.token_type_embeddings.weight"].shape == (1, 768)
    assert len(smi.smiles_model.encoder.layer) == 6 and smi.smiles_model.config.num_attention_heads == 12
    assert s["dense.weight"].shape == (768, 768)
    i = img.state_dict()
    assert i["features.0.weight"].shape == (128, 1, 7, 7)
    assert i["classifier.0.weight"].shape == (4096, 512 * 9 * 9)
    assert i["classifier.6.weight"].shape == (512, 4096)
    assert img(torch.empty(2, 1, 224, 224, device="meta")).shape == (2, 512)
    n = nmr.state_dict()
    assert n["model.0.layer.weight"].shape == (32, 1, 400) and n["model.7.weight"].shape == (768, 672)


def _cress_joint_state(smiles_arch: dict) -> dict[str, torch.Tensor]:
    """A state dict laid out like CReSS's ChemClipModel .pth (RoBERTa registered twice, logit scales)."""
    torch.manual_seed(0)
    smi, nmr = build_cress_smiles(**smiles_arch), build_cress_nmr()
    state = {"logit_scale": torch.tensor(2.6), "smiles_model.logit_scale": torch.tensor(2.6)}
    for k, v in smi.smiles_model.state_dict().items():
        state[f"smiles_model.smiles_model.{k}"] = v
        state[f"smiles_model.model.{k}"] = v
    state["smiles_model.dense.weight"], state["smiles_model.dense.bias"] = smi.dense.weight, smi.dense.bias
    state["nmr_model.logit_scale"] = torch.tensor(2.6)
    for k, v in nmr.state_dict().items():
        state[f"nmr_model.{k}"] = v
    return state


def test_cress_checkpoint_loads_both_halves(tmp_path):
    state = _cress_joint_state(TINY_ROBERTA)
    torch.save(state, tmp_path / "8.pth")
    nmr = load_teacher("c13", TeacherConfig(kind="cress_nmr13c", path=str(tmp_path / "8.pth")))
    peaks = [[17.6, 22.6, 41.8, 140.99, 203.0], [23.3, 60.5, 132.1]]
    samples = [{"key": str(i), "nmr13c.npy": np.array(p)} for i, p in enumerate(peaks)]
    emb = nmr.encode_samples(samples)
    assert emb.shape == (2, 768)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    ref = build_cress_nmr()
    ref.load_state_dict(
        {k[len("nmr_model.") :]: v for k, v in state.items() if k.startswith("nmr_model.model")}
    )
    torch.testing.assert_close(emb, ref.eval()(nmr.prepare(samples)))
    assert nmr.missing_reason({"smiles": "CCO"}) == "no 13C spectrum"
    # The SMILES half (tiny widths via params; the published defaults are checked above).
    smi = load_teacher("cs", TeacherConfig(kind="cress_smiles", path=str(tmp_path), params=TINY_ROBERTA))
    assert smi.dim == 32
    ids, mask = torch.tensor([[0, 5, 6, 2]]), torch.ones(1, 4, dtype=torch.long)
    out = smi.forward((ids, mask))
    assert out.shape == (1, 32) and abs(float(out.norm()) - 1) < 1e-5
    with pytest.raises(TeacherError, match="tokenizer"):
        smi.encode_smiles(["CCO"])


def test_nmr_binning_matches_cress():
    v = bin_nmr13c([-60.0, 0.0, 17.64, 400.0])
    assert v.shape == (4000,) and v.sum() == 4
    assert v[0] == 1 and v[500] == 1 and v[676] == 1 and v[3999] == 1


def test_mismatch_error_lists_every_problem(tmp_path):
    state = _cress_joint_state(TINY_ROBERTA)
    del state["nmr_model.model.3.block.0.bias"]
    state["nmr_model.model.9.weight"] = torch.zeros(3)
    state["nmr_model.model.7.weight"] = torch.zeros(512, 672)
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")  # Lightning-style wrapper is unwrapped
    with pytest.raises(CheckpointMismatchError) as err:
        load_teacher("c13", TeacherConfig(kind="cress_nmr13c", path=str(tmp_path / "bad.ckpt")))
    msg = str(err.value)
    assert "1 missing keys: model.3.block.0.bias" in msg
    assert "1 unexpected keys: model.9.weight" in msg
    assert "shape mismatch model.7.weight: model [768, 672], checkpoint [512, 672]" in msg
    # Widths that differ from the published RoBERTa are reported key by key, not as the first failure.
    wrong = {k: v for k, v in _cress_joint_state({**TINY_ROBERTA, "vocab_size": 50}).items()}
    with torch.device("meta"):
        model = build_cress_smiles(**TINY_ROBERTA)
    with pytest.raises(
        CheckpointMismatchError, match=r"word_embeddings.weight: model \[181, 32\], checkpoint \[50"
    ):
        load_strict(model, wrong, "cress", rename=cress_smiles_rename)


def test_img2mol_loader_and_input(tmp_path):
    with torch.device("meta"):
        model = build_img2mol()
    ckpt = {"features.0.weight": torch.zeros(64, 1, 7, 7), "features.0.bias": torch.zeros(128)}
    with pytest.raises(CheckpointMismatchError) as err:
        load_strict(model, ckpt, "img2mol")
    assert "20 missing keys" in str(err.value) and "features.0.weight: model [128, 1, 7, 7]" in str(err.value)
    x = image_tensor(None, "c1ccccc1O")  # no stored image: RDKit draws the molecule
    assert x.shape == (1, 224, 224) and 0.0 <= x.min() < 0.5 < x.max() <= 1.0
    with pytest.raises(TeacherError, match="not available offline"):
        load_teacher("img", TeacherConfig(kind="img2mol", modality="image"))
