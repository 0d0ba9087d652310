"""Teachers: interface, fingerprint and SMILES-LM (real rxnfp weights), frozen-ness."""

from __future__ import annotations

import pytest
import torch

from acml_dist.config.teachers import TeacherConfig
from acml_dist.data.datasets import moses_smiles
from acml_dist.teachers import TeacherError, load_teacher
from acml_dist.teachers.smiles_lm import regex_tokens

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def rxnfp():
    return load_teacher("rxnfp", TeacherConfig(kind="smiles_lm", modality="smiles", batch_size=4))


def test_fingerprint_teacher_is_deterministic_and_param_hashed():
    cfg = TeacherConfig(kind="fingerprint", params={"radius": 2, "n_bits": 512, "counts": False})
    a, b = load_teacher("fp", cfg), load_teacher("fp", cfg)
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O"]
    ea, eb = a.encode_smiles(smiles), b.encode_smiles(smiles)
    assert ea.shape == (3, 512) and ea.dtype == torch.float32
    assert torch.equal(ea, eb) and set(ea.unique().tolist()) <= {0.0, 1.0}
    assert a.weights_hash() == b.weights_hash()
    counts = load_teacher("fp", TeacherConfig(kind="fingerprint", params={"n_bits": 512, "counts": True}))
    assert counts.weights_hash() != a.weights_hash()
    assert counts.encode_smiles(["CCCCCCCC"]).max() > 1  # repeated environments are counted
    assert a.missing_reason({"smiles": "not a smiles"}) == "unparsable smiles"


def test_descriptor_teacher_squashes_rdkit_descriptors_in_their_order():
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    from acml_dist.chem.descriptors import descriptor_names

    teacher = load_teacher("desc", TeacherConfig(kind="descriptors", modality="descriptors"))
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O"]
    emb = teacher.encode_smiles(smiles)
    names = descriptor_names()
    assert emb.shape == (3, len(names)) == (3, teacher.dim) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all() and torch.equal(emb, teacher.encode_smiles(smiles))
    logp = Descriptors.MolLogP(Chem.MolFromSmiles("c1ccccc1O"))
    column = names.index("MolLogP")
    assert emb[1, column].item() == pytest.approx(
        torch.sign(torch.tensor(logp)) * torch.log1p(torch.tensor(abs(logp)))
    )
    assert emb[0, names.index("NumAromaticRings")] == 0 and emb[1, names.index("NumAromaticRings")] > 0
    assert teacher.missing_reason({"smiles": "not a smiles"}) == "unparsable smiles"
    with pytest.raises(ValueError, match="cannot parse"):
        teacher.encode_smiles(["CCO", "C1CC"])


def test_unknown_kind_and_keys_fail_clearly():
    with pytest.raises(TeacherError, match="unknown kind"):
        load_teacher("x", {"kind": "nope"})
    with pytest.raises(TeacherError, match="unknown teacher config keys"):
        load_teacher("x", {"kind": "fingerprint", "radius": 3})


def test_rxnfp_regex_tokens_have_no_unknowns(rxnfp):
    smiles = moses_smiles(40) + ["c1ccc[nH]1", "C[N+](C)(C)C", "Brc1ccc(Cl)cc1", "[O-]C(=O)C"]
    ids, mask = rxnfp.prepare([{"smiles": s} for s in smiles])
    assert (ids == rxnfp.tokenizer.unk_token_id).sum() == 0
    assert regex_tokens("c1ccc[nH]1>>") == ["c", "1", "c", "c", "c", "[nH]", "1", ">>"]
    # The molecule is fed as "SMILES>>", framed by [CLS] ... [SEP]
    first = ids[0, : int(mask[0].sum())].tolist()
    assert first[0] == rxnfp.tokenizer.cls_token_id and first[-1] == rxnfp.tokenizer.sep_token_id
    assert first[-2] == rxnfp.vocab[">>"]


def test_rxnfp_embeddings_are_order_independent_and_pooled(rxnfp):
    smiles = moses_smiles(10)
    e = rxnfp.encode_smiles(smiles)
    assert e.shape == (10, 256) and rxnfp.dim == 256
    rev = rxnfp.encode_smiles(smiles[::-1]).flip(0)
    torch.testing.assert_close(e, rev, atol=1e-4, rtol=1e-4)  # padding and batching do not leak
    mean = load_teacher("rxnfp", TeacherConfig(kind="smiles_lm", pooling="mean"))
    assert mean.weights_hash() == rxnfp.weights_hash()
    assert not torch.allclose(mean.encode_smiles(smiles[:2]), e[:2])


def test_teacher_is_frozen_through_a_training_step(rxnfp):
    params = rxnfp.parameters()
    assert params and all(not p.requires_grad for p in params)
    before = {k: v.clone() for k, v in rxnfp.model.state_dict().items()}
    head = torch.nn.Linear(rxnfp.dim, 8)
    # A careless caller hands the teacher's parameters to the optimiser and flips it to train mode.
    opt = torch.optim.AdamW(list(head.parameters()) + params, lr=1e-1)
    rxnfp.model.train()
    emb = rxnfp.encode_smiles(["CCO", "c1ccccc1", "CCN", "CC(=O)O"])
    assert not emb.requires_grad and not rxnfp.model.training
    loss = head(emb).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in params)
    after = rxnfp.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert head.weight.grad is not None
    # Dropout stays off: the same input gives the same embedding.
    torch.testing.assert_close(rxnfp.encode_smiles(["CCO"]), emb[:1])


def test_local_bert_directory_with_its_own_tokenizer(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "c", "C", "O", "N", "(", ")", "=", "1", "[nH]"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast.from_pretrained(tmp_path, do_lower_case=False)  # a directory with vocab.txt
    assert tok.get_vocab()["[nH]"] == 13
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    hf = load_teacher(
        "tiny", TeacherConfig(kind="smiles_lm", path=str(tmp_path), pooling="mean", max_length=512)
    )
    assert hf.dim == 16 and hf.tokenizer_mode == "hf" and hf.max_length == 64
    rx = load_teacher(
        "tiny", TeacherConfig(kind="smiles_lm", path=str(tmp_path), params={"tokenizer": "regex"})
    )
    ids, _ = rx.prepare([{"smiles": "c1ccc[nH]1"}])
    assert rx.vocab["[nH]"] in ids[0].tolist()
    out = hf.encode_smiles(["CCO", "c1ccccc1"])
    assert out.shape == (2, 16) and torch.isfinite(out).all()
    with pytest.raises(TeacherError, match="not a model directory"):
        load_teacher("x", TeacherConfig(kind="smiles_lm", path=str(tmp_path / "nope")))


def test_rxnfp_batch_ids_are_each_molecules_own_padded_row(rxnfp):
    """The vectorised batch tokenisation equals tokenising each SMILES alone: [CLS] ids [SEP], padding after,
    mask 1 exactly over the row, truncation at max_length."""
    tok = rxnfp.tokenizer
    smiles = ["CCO", "c1ccccc1C(=O)O", "C" * 600, "[Na+].[Cl-]"]
    ids, mask = rxnfp._regex_ids(smiles)
    assert ids.shape == mask.shape == (4, rxnfp.max_length)
    for row, smi in enumerate(smiles):
        body = [rxnfp.vocab.get(t, tok.unk_token_id) for t in regex_tokens(rxnfp.template.format(smi))]
        want = [tok.cls_token_id, *body[: rxnfp.max_length - 2], tok.sep_token_id]
        assert ids[row, : len(want)].tolist() == want
        assert mask[row].tolist() == [1] * len(want) + [0] * (rxnfp.max_length - len(want))
        assert set(ids[row, len(want) :].tolist()) <= {tok.pad_token_id or 0}


def test_a_saved_copy_of_rxnfp_is_tokenised_as_rxnfp(rxnfp, tmp_path):
    """A copy of rxnfp's weights written by transformers (config.json gains model_type: bert) at
    teachers.<name>.path keeps rxnfp's regex tokens on "SMILES>>": the same teacher, the same embeddings."""
    rxnfp.model.float().save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "vocab.txt").write_text((rxnfp.path / "vocab.txt").read_text())
    copy = load_teacher("rxnfp", TeacherConfig(kind="smiles_lm", path=str(tmp_path), batch_size=4))
    assert (copy.tokenizer_mode, copy.template) == ("regex", "{}>>")
    smiles = ["CCO", "c1ccccc1C(=O)O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]
    torch.testing.assert_close(copy.encode_smiles(smiles), rxnfp.encode_smiles(smiles), atol=1e-5, rtol=1e-4)
    hf_cfg = TeacherConfig(kind="smiles_lm", path=str(tmp_path), params={"tokenizer": "hf"})
    hf = load_teacher("rxnfp", hf_cfg)
    assert hf.tokenizer_mode == "hf"  # an explicit choice still wins
