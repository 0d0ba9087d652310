"""`acml pretrain-teacher image` end to end on data the test makes: a featurised NCI subset (real Ray), a
cached fingerprint teacher as the frozen target, depictions from `acml depict`. A tiny CNN trains for a few
epochs in a real MLflow store, is registered as acml-teacher-image and loads back from the registry giving
the saved CNN's embeddings; its held-out R@1 must beat its untrained twin's (a comparison that can fail:
an image that does not reach the network, a broken target join or a loss that does not train make it
fail). Missing inputs give one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from acml_dist.cli import main
from acml_dist.data.modalities import read_images

pytestmark = pytest.mark.integration


def test_pretrain_image_teacher_beats_its_twin_tracks_registers_and_loads_back(
    tmp_path: Path, ray_local, mlflow_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    from acml_dist.teachers import load_teacher

    root = tmp_path / "ds"
    common = [f"shards={root}", f"runs_root={tmp_path / 'runs'}", "target=morgan"]
    assert main(["featurize", "data=nci5k", "data.limit=320", f"output={root}", "data.exclude=[]",
                 "data.split=random"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["pretrain-teacher", "image", *common]) == 2
    err = capsys.readouterr().err
    assert "no image depictions" in err and "acml depict" in err and err.count("\n") == 1
    assert main(["embed", f"shards={root}", "teachers=fingerprint"]) == 0
    assert main(["depict", f"shards={root}", "limit=0", "store_size=64", "chunk_size=100"]) == 0
    keys, images = read_images(root)
    capsys.readouterr()

    train = [*common, "epochs=25", "batch_size=32", "val_fraction=0.25", "threads=2", "image_width=8",
             "image_resolution=64", "lr=2e-3"]  # fmt: skip
    assert main(["pretrain-teacher", "image", *train]) == 0
    printed = capsys.readouterr().out
    assert f"image: {len(keys)} depictions, {len(keys)} paired with a morgan embedding" in printed
    assert "acml-teacher-image v1" in printed and "R@1 untrained twin" in printed
    client = mlflow.MlflowClient()
    version = client.get_model_version("acml-teacher-image", "1")
    run = client.get_run(version.run_id)
    p, m = run.data.params, run.data.metrics
    assert p["modality"] == "image" and p["image_resolution"] == "64" and p["image_loss"] == "cosine_nce"
    losses = [x.value for x in client.get_metric_history(run.info.run_id, "train_loss")]
    assert len(losses) == 25 and losses[-1] < 0.7 * losses[0]
    assert m["n_val"] == round(len(keys) * 0.25) and m["chance_r1"] == pytest.approx(1 / m["n_val"])
    # the real comparison: held out, the trained CNN retrieves the right fingerprint far more often
    assert m["val_r1"] >= 3 * max(m["untrained_val_r1"], m["chance_r1"]), m
    assert m["train_r1"] > m["val_r1"] and m["images_per_s"] > 0
    assert float(version.tags["val_r1"]) == m["val_r1"]
    # the registered teacher gives the trained CNN's embeddings, for stored images and drawn SMILES alike
    out = tmp_path / "runs" / "teacher-image"
    registered = load_teacher("image", {"kind": "image_cnn", "path": "models:/acml-teacher-image/1",
                                        "device": "cpu"})  # fmt: skip
    local = load_teacher("image", json.loads((out / "teacher_config.json").read_text()))
    samples = [{"image": im} for im in images[:6]]
    got = registered.encode_samples(samples).numpy()
    np.testing.assert_allclose(got, local.encode_samples(samples).numpy(), atol=1e-5)
    assert registered.dim == 2048 and registered.modality == "image"
    assert registered.weights_hash() == version.tags["weights_hash"]
    drawn = registered.encode_smiles(["c1ccccc1O", "CCO"]).numpy()
    assert drawn.shape == (2, 2048) and np.allclose(np.linalg.norm(drawn, axis=1), 1, atol=1e-5)
    params = {**registered.arch, "random_init": True}
    untrained = load_teacher("image", {"kind": "image_cnn", "modality": "image", "params": params})
    assert not np.allclose(untrained.encode_samples(samples).numpy(), got, atol=1e-3)
