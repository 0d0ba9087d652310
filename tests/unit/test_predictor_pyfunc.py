"""A registered predictor is read only when it is one of ours: the MLflow model names this package's loader
module and holds no pickle (the check `acml predict predictor=models:/...` runs before loading anything)."""

from __future__ import annotations

import pytest

from acml_dist.errors import UnsafeFileError
from acml_dist.evaluate.predictors import LOADER_MODULE, predictors_in_model

pytestmark = pytest.mark.unit


def _mlmodel(root, loader: str, extra: str = "") -> None:
    root.mkdir()
    (root / "MLmodel").write_text(
        f"flavors:\n  python_function:\n    loader_module: {loader}\n    data: data/predictors\n{extra}"
    )
    (root / "data" / "predictors").mkdir(parents=True)


def test_our_registered_predictor_gives_its_predictors_folder(tmp_path):
    _mlmodel(tmp_path / "ok", LOADER_MODULE)
    assert predictors_in_model(tmp_path / "ok", "models:/p/1") == tmp_path / "ok" / "data" / "predictors"


def test_another_loader_or_a_pickle_is_refused(tmp_path):
    _mlmodel(tmp_path / "other", "acml_dist.embedder")  # an encoder, not a predictor
    with pytest.raises(UnsafeFileError, match="loader"):
        predictors_in_model(tmp_path / "other", "models:/p/1")
    _mlmodel(tmp_path / "pickled", LOADER_MODULE, "    python_model: python_model.pkl\n")
    (tmp_path / "pickled" / "python_model.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(UnsafeFileError, match="python_model"):
        predictors_in_model(tmp_path / "pickled", "models:/p/1")
