"""Configuration mistakes end in one line that names the key, and exit 2: a typo (with or without `+`), a
stray key, a wrong type, an impossible value, a missing mandatory value. No OmegaConf internals, and no
advice to append the misspelt key with `+` (which Hydra gave, and which was then accepted and ignored)."""

from __future__ import annotations

import pytest

from acml_dist.cli import main

pytestmark = pytest.mark.unit

CASES = [
    (
        ["train", "trainer.micro_bach=3"],
        "unknown key 'trainer.micro_bach'; did you mean trainer.micro_batch?",
    ),
    (
        ["train", "+trainer.micro_bach=3"],
        "unknown key 'trainer.micro_bach'; did you mean trainer.micro_batch?",
    ),
    (["train", "+foo=1"], "unknown key 'foo'"),
    (["train", "+trainer.lr=1"], "already at 'trainer.lr'"),
    (["train", "trainer.lr=abc"], "trainer.lr: Value 'abc'"),
    (["train", "trainer.micro_batch=0"], "trainer.micro_batch=0: must be an integer >= 1"),
    (["train", "trainer.epochs=-1"], "trainer.epochs=-1: must be an integer >= 1"),
    (["train", "trainer.lr=-1e-3"], "trainer.lr=-0.001: must be a number > 0"),
    (["train", "trainer.zero_stage=7"], "trainer.zero_stage=7: must be 0, 1, 2 or 3"),
    (["train", "trainer.precision=fp8"], "trainer.precision='fp8'"),
    (["train", "model.dropout=1.5"], "model.dropout=1.5"),
    (["train", "teachers=fingerprint", "teachers.morgan.batch_size=0"], "teachers.morgan.batch_size=0"),
    (["featurize", "data.split_fractions=[0.9,0.2,0.1]"], "data.split_fractions"),
    (["featurize", "data.standardize.max_heavy_atoms=20000"], "data.standardize.max_heavy_atoms=20000"),
    (
        ["featurize", "data.standardize.min_heavy_atoms=50", "data.standardize.max_heavy_atoms=10"],
        "min_heavy",
    ),
    (["embed-smiles"], "missing required value: input, output"),
    (["embed-smiles", "output=x.parquet"], "missing required value: input"),
    (["embed-smiles", "input=x.csv", "output=y.parquet", "batch_size=0"], "batch_size=0"),
    (["serve", "port=abc"], "port: Value 'abc'"),
]


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_config_mistake_is_one_line_and_exit_2(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"acml {argv[0]}: ") and expected in err, err
    for internal in ("full_key", "object_type", "reference_type", "Traceback", "To append to your config"):
        assert internal not in err, err


def test_valid_values_still_pass(capsys, monkeypatch):
    monkeypatch.delenv("ACML_SERVE_HOST", raising=False)
    assert (
        main(["train", "--cfg", "job", "trainer.micro_batch=1", "trainer.max_steps=1", "loss.kind=acml_soft"])
        == 0
    )
    assert main(["embed-smiles", "--cfg", "job"]) == 0  # printing the config needs no mandatory value
    assert main(["serve", "--cfg", "job", "model=runs/demo"]) == 0
    assert "host: 127.0.0.1" in capsys.readouterr().out  # loopback unless told otherwise
