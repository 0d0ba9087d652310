"""Configuration tree and CLI: every entry composes, validation names the bad key, --cfg job prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from acml_dist.config import SCHEMAS, ConfigError, config_dir, load_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("entry", sorted(SCHEMAS))
def test_every_entry_composes(entry):
    cfg = load_config(entry, [], complete=False)  # embed_smiles: input/output are mandatory
    assert cfg is not None


def test_groups_exist_and_compose():
    groups = {p.name for p in config_dir().iterdir() if p.is_dir()}
    assert {"data", "model", "teachers", "loss", "trainer", "cluster", "eval"} <= groups
    for group in ["model", "loss", "trainer", "cluster", "teachers", "eval", "data"]:
        for option in sorted((config_dir() / group).glob("*.yaml")):
            load_config("pretrain", [f"{group}={option.stem}"])


def test_overrides_apply_and_types_convert():
    cfg = load_config(
        "pretrain", ["trainer.lr=3e-4", "model=gin", "model.emb_dim=32", "teachers=fingerprint"]
    )
    assert cfg.trainer.lr == pytest.approx(3e-4)
    assert cfg.model.emb_dim == 32
    assert list(cfg.teachers) == ["morgan"]


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.lrr=1", "trainer.lrr"),
        ("trainer.lr=abc", "trainer.lr"),
        ("model.emb_dim=wide", "model.emb_dim"),
        ("data.standardize.min_heavy_atoms=x", "data.standardize.min_heavy_atoms"),
    ],
)
def test_bad_key_or_type_names_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config("pretrain", [override])
    assert key in str(err.value)


def test_a_teacher_can_be_added_or_extended_from_the_command_line():
    cfg = load_config(
        "train",
        [
            "teachers=fingerprint",
            "+teachers.morgan3.kind=fingerprint",
            "+teachers.morgan3.modality=fingerprint",
            "+teachers.morgan3.params={radius:3,n_bits:1024}",
            "+teachers.morgan.params.chirality=true",  # a kind-specific key added to an existing teacher
            "+teachers.fp={kind:fingerprint,modality:fingerprint,weight:0.5}",
        ],
    )
    assert list(cfg.teachers) == ["morgan", "morgan3", "fp"]
    assert cfg.teachers.morgan3.params == {"radius": 3, "n_bits": 1024} and cfg.teachers.morgan3.weight == 1.0
    assert cfg.teachers.morgan.params.chirality is True and cfg.teachers.morgan.params.radius == 2
    assert cfg.teachers.fp.weight == 0.5 and cfg.teachers.fp.source == "cache"
    for bad in ("+teachers.fp.colour=red", "+teachers.fp={kind:fingerprint,colour:1}"):
        with pytest.raises(ConfigError, match="unknown key 'teachers.fp.colour'"):
            load_config("train", ["teachers=fingerprint", bad])


def test_model_uri_is_a_value_not_a_group():
    cfg = load_config("evaluate", ["model=models:/acml-gin@champion"])
    assert cfg.model == "models:/acml-gin@champion"


def _acml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_cli_help_lists_subcommands():
    out = _acml("--help")
    assert out.returncode == 0
    for name in [
        "featurize",
        "embed",
        "train",
        "evaluate",
        "finetune",
        "predict",
        "embed-smiles",
        "pipeline",
        "serve",
    ]:
        assert name in out.stdout
    sub = _acml("train", "--help")
    assert sub.returncode == 0 and "configs/train.yaml" in sub.stdout


def test_cli_help_is_lazy():
    """`acml --help` must not import torch, Ray, DeepSpeed or MLflow."""
    code = (
        "import sys; from acml_dist import cli; cli.build_parser().format_help();"
        "print(sorted(m for m in ('torch','ray','deepspeed','mlflow','rdkit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]"


def test_cli_cfg_job_prints_resolved_config():
    out = _acml("train", "--cfg", "job", "trainer.lr=0.005")
    assert out.returncode == 0, out.stderr
    assert "lr: 0.005" in out.stdout and "emb_dim" in out.stdout


def test_cli_reports_config_error():
    out = _acml("featurize", "data.nonsense=1")
    assert out.returncode == 2
    assert "data.nonsense" in out.stderr


@pytest.mark.parametrize(
    ("make_input", "expected"),
    [
        (lambda d: d / "missing.smi", "no input files at"),
        (lambda d: _write(d / "mols.csv", "id,Canonical_Smiles\na,CCO\n"), "column 'smiles' not in header"),
        (lambda d: _write(d / "mols.xyz", "CCO\n"), "cannot tell the format"),
    ],
)
def test_cli_input_errors_are_one_line(tmp_path, make_input, expected):
    """A wrong input is the user's to fix: exit 2 with one line naming it, no traceback, nothing written."""
    path = make_input(tmp_path)
    out = _acml("featurize", f"input={path}", f"output={tmp_path / 'out'}")
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr and str(path) in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "out").exists()


def test_cluster_featurize_script_is_the_cli(tmp_path):
    out = subprocess.run(
        [sys.executable, "cluster/featurize.py", f"input={tmp_path / 'none.smi'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2 and "acml featurize: no input files at" in out.stderr
    assert "Traceback" not in out.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_pretrain_script_cfg_job():
    out = subprocess.run(
        [sys.executable, "cluster/pretrain.py", "--cfg", "job", "data.limit=10"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "limit: 10" in out.stdout
