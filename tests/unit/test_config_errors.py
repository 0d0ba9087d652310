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
    (["predict", "input=x.csv"], "missing required value: predictor, output"),
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


def test_one_exit_code_mapping_for_every_entry_point(capsys, monkeypatch):
    """errors.run_main: input error -> one line, 2; failed stage -> one line, 1; a Ray task's error shows
    its cause; a bug keeps its traceback; ACML_DEBUG=1 raises everything."""
    from acml_dist.errors import DataError, StageError, run_main

    def fail(exc: BaseException):
        def body() -> int:
            raise exc

        return body

    monkeypatch.delenv("ACML_DEBUG", raising=False)
    assert run_main("prog", lambda: 0) == 0
    assert run_main("prog", fail(DataError("no column 'smiles'"))) == 2
    assert run_main("prog", fail(FileNotFoundError("shards/x does not exist"))) == 2
    stage = StageError("featurize", FileNotFoundError("no input"))
    assert run_main("prog", fail(stage)) == 1
    wrapped = RuntimeError("ray traceback ...")
    wrapped.cause = DataError("the original")  # what a RayTaskError carries
    with pytest.raises(RuntimeError):  # not an input error: a bug, traceback kept
        run_main("prog", fail(wrapped))
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "prog: no column 'smiles'",
        "prog: shards/x does not exist",
        "prog: stage 'featurize' failed: FileNotFoundError: no input",
    ]

    class RayTaskDataError(DataError):  # Ray's error class derives from the task's exception class
        cause = DataError("the original")

    assert run_main("prog", fail(RayTaskDataError("ray traceback ..."))) == 2
    assert capsys.readouterr().err == "prog: the original\n"
    monkeypatch.setenv("ACML_DEBUG", "1")
    with pytest.raises(DataError):
        run_main("prog", fail(DataError("x")))


def test_the_pipeline_script_is_acml_pipeline(capsys):
    """cluster/pretrain.py goes through `acml pipeline`: same config, same one-line errors."""
    import runpy
    from pathlib import Path

    script = runpy.run_path(str(Path(__file__).resolve().parents[2] / "cluster" / "pretrain.py"))
    assert script["main"](["stages=[nonsense]"]) == 2  # refused by run_pipeline before Ray or MLflow start
    err = capsys.readouterr().err.strip()
    assert err.startswith("acml pipeline: ") and "unknown stages ['nonsense']" in err and "\n" not in err
