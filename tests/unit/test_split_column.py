"""The file's own split (`data.split=column`): words for the parts, the errors that name what is wrong,
and a corpus that cannot be split that way."""

from __future__ import annotations

import numpy as np
import pytest

from acml_dist.errors import DataError
from acml_dist.evaluate.splits import column_split, make_split

pytestmark = pytest.mark.unit


def test_the_parts_are_the_words_in_any_case():
    train, val, test = column_split(
        ["train", " Training", "VAL", "valid", "validation", "dev", "Test", "testing"]
    )
    assert train.tolist() == [0, 1] and val.tolist() == [2, 3, 4, 5] and test.tolist() == [6, 7]


def test_a_value_that_names_no_part_and_an_empty_part_are_errors():
    with pytest.raises(DataError, match=r"'holdout': 2.*'\(empty\)': 1"):
        column_split(["train", "holdout", "holdout", float("nan"), "test"])
    with pytest.raises(DataError, match="nothing to learn or score"):
        make_split(["CCO", "CCC", "CCN"], "column", [0.8, 0.1, 0.1], 0, ["train", "train", "test"])
    with pytest.raises(DataError, match="split column"):
        make_split(["CCO"], "column", [0.8, 0.1, 0.1], 0, None)
    parts = ["train", "train", "valid", "test"]
    assert [p.tolist() for p in make_split(["C"] * 4, "column", [0.8, 0.1, 0.1], 7, parts)] == [
        [0, 1],
        [2],
        [3],
    ]
    assert isinstance(column_split(parts)[0], np.ndarray)


def test_a_corpus_is_not_split_by_a_column(tmp_path, capsys):
    from acml_dist.cli import main
    from acml_dist.errors import EXIT_INPUT_ERROR

    code = main(["featurize", "data=moses_demo", "data.split=column", f"shards_root={tmp_path}"])
    assert code == EXIT_INPUT_ERROR and "a corpus is split by scaffold or random" in capsys.readouterr().err
