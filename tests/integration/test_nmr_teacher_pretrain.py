"""CReSS-style 13C teacher training on real outputs: predicted spectra (acml nmr-predict) joined by key with
a cached rxnfp embedding (acml embed, real Ray), trained on CPU; the trained encoder retrieves its
molecules' SMILES-teacher embeddings far better than its untrained twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acml_dist.config import load_config
from acml_dist.data.featurize import featurize_corpus
from acml_dist.data.nmr_stage import predict_dataset
from acml_dist.teachers.cache import embed_dataset
from acml_dist.training.nmr_pretrain import paired_arrays, save_nmr13c_teacher, train_nmr13c_teacher
from acml_dist.training.pair_training import FitOptions

pytestmark = pytest.mark.integration

SMILES = [
    "CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CC(=O)O", "CN1CCC[C@H]1c1cccnc1", "O=C(O)c1ccccc1",
    "CCN(CC)CC", "c1ccc2ccccc2c1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "OC1CCCCC1", "Cc1ccccc1N", "COc1ccccc1",
    "CC1=CC(=O)C=CC1=O", "N#Cc1ccccc1", "CCCCCCCC", "CC(C)O", "ClCCl", "O=C1CCCCC1", "c1ccncc1",
    "NS(N)(=O)=O", "CCOC(=O)C", "C1CCOC1",
]  # fmt: skip


def test_13c_teacher_learns_from_predicted_spectra_and_rxnfp_cache(tmp_path: Path, ray_local) -> None:
    (tmp_path / "mols.csv").write_text("id,smiles\n" + "".join(f"m{i},{s}\n" for i, s in enumerate(SMILES)))
    root = tmp_path / "ds"
    featurize_corpus(
        load_config("featurize", [f"input={tmp_path / 'mols.csv'}", f"output={root}", "data.exclude=[]"])
    )
    embed_dataset(load_config("embed", [f"shards={root}", "teachers=rxnfp"]))
    predict_dataset(
        load_config("nmr_predict", [f"shards={root}", "limit=0", "nuclei=[13C]", "chunk_size=11"])
    )
    keys, x, y = paired_arrays(root, "rxnfp")
    assert len(keys) == len(SMILES) - 1  # sulfamide has no carbon: no 13C spectrum
    assert x.shape == (len(keys), 4000) and y.shape == (len(keys), 256)
    out = train_nmr13c_teacher(x, y, FitOptions(epochs=25, batch_size=32, val_fraction=0.0, threads=1))
    assert out["history"][-1] < 0.5 * out["history"][0]
    assert out["train_r1"] >= 0.8 and out["train_r1"] > 3 * out["untrained_train_r1"]
    emb = out["model"].encoder(__import__("torch").from_numpy(x[:3])).detach().numpy()
    assert emb.shape == (3, 768) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # saved in the published checkpoint layout, it loads as a cress_nmr13c teacher with the same embeddings
    from acml_dist.teachers import load_teacher

    ckpt = save_nmr13c_teacher(out["model"], tmp_path / "nmr13c.pth")
    teacher = load_teacher("nmr13c", {"kind": "cress_nmr13c", "path": str(ckpt)})
    got = teacher.encode_samples([{"nmr13c.npy": row} for row in x[:3]]).numpy()
    np.testing.assert_allclose(got, emb, atol=1e-5)
    with pytest.raises(ValueError, match="pair row by row"):
        train_nmr13c_teacher(x, y[:-1])
