"""`acml pretrain-teacher <modality> --help` for each modality, and the one-line refusals of the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from acml_dist.cli import main


@pytest.mark.parametrize("modality", ["nmr13c", "nmr1h", "ms", "image"])
def test_help_per_modality(modality: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "pretrain-teacher", modality, "--help"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"usage: acml pretrain-teacher {modality}" in out
    want = {"nmr13c": "CReSS 13C", "nmr1h": "Conv1d 1-32-16-8-1", "ms": "mass spectra"}
    want["image"] = "Img2Mol-style CNN"
    assert want[modality] in out


def test_modality_is_required_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain-teacher"]) == 2
    assert "name one of nmr13c, nmr1h, ms" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain-teacher", "ir"])
    assert "invalid choice: 'ir'" in capsys.readouterr().err


def test_resolved_config_carries_the_modality(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain-teacher", "ms", "--cfg", "job", "target=morgan", "epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "modality: ms" in out and "target: morgan" in out and "epochs: 3" in out


def test_missing_dataset_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain-teacher", "nmr1h", f"shards={tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no featurised dataset" in err


def test_conv1d_teacher_refuses_a_spectrum_of_another_length() -> None:
    import numpy as np

    from acml_dist.teachers import TeacherError, load_teacher

    cfg = {"kind": "conv1d_spectrum", "modality": "ms", "params": {"n_bins": 50, "random_init": True}}
    teacher = load_teacher("ms", cfg)
    emb = teacher.encode_samples([{"ms.npy": np.eye(50, dtype=np.float32)[i]} for i in range(3)]).numpy()
    assert emb.shape == (3, 768) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert teacher.missing_reason({"smiles": "CCO"}) == "no ms spectrum"
    with pytest.raises(TeacherError, match="ms spectrum of 40 bins, not 50"):
        teacher.encode_samples([{"ms.npy": np.zeros(40, np.float32)}])
    with pytest.raises(TeacherError, match="params.n_bins"):
        load_teacher("ms", {"kind": "conv1d_spectrum", "params": {"random_init": True}})
