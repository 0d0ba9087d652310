"""The teacher sanity check separates chemistry-aware embeddings from chemistry-blind ones."""

from __future__ import annotations

import numpy as np
import pytest

from acml_dist.config.teachers import TeacherConfig
from acml_dist.data.datasets import moses_smiles
from acml_dist.teachers import load_teacher
from acml_dist.teachers.sanity import knn_tanimoto

pytestmark = pytest.mark.unit


def test_knn_tanimoto_passes_a_real_teacher_and_fails_a_blind_one():
    smiles = moses_smiles(300)
    fp = load_teacher(
        "fp", TeacherConfig(kind="fingerprint", params={"radius": 3, "n_bits": 1024, "counts": True})
    )
    real = knn_tanimoto(smiles, fp.encode_smiles(smiles).numpy(), k=5)
    blind = knn_tanimoto(smiles, np.random.default_rng(0).normal(size=(300, 64)).astype(np.float32), k=5)
    assert real["random_tanimoto"] == blind["random_tanimoto"]  # the same random pairs
    assert real["ratio"] > 2.0
    assert 0.8 < blind["ratio"] < 1.25
