"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import featurise

from acml_dist.data.datasets import moses_smiles


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    """400 MOSES molecules featurised (random 80/20/0 split, 64 per shard) with the fingerprint cache: the
    training tests' dataset (resume, ZeRO, checkpoint safety), built once per session."""
    root = tmp_path_factory.mktemp("train_shards") / "ds"
    overrides = ("data.split_fractions=[0.8,0.2,0.0]", "data.samples_per_shard=64")
    return featurise(root, moses_smiles(400), *overrides)
