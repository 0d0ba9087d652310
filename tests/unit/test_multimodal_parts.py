"""The pieces of multimodal training that need no process group: the per-modality loss window, the history
row, and the key lookup that aligns a modality output with the shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acml_dist.training.metrics import MetricWindow, step_record, step_values


def test_step_values_carry_presence_fractions():
    masks = {"a": torch.tensor([True, True, True, True]), "b": torch.tensor([True, False, False, False])}
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0), "online": torch.tensor(1.0)}
    v = step_values(torch.tensor(6.0), losses, masks)
    assert v.tolist() == [6.0, 2.0, 3.0, 1.0, 1.0, 0.25, 1.0]  # a teacher without a mask: every row


def test_window_averages_a_modality_only_over_batches_that_had_it():
    w = MetricWindow()
    names = ["a", "b"]
    # batch 1: b present in a quarter of the rows (loss 3); batch 2: no b at all (placeholder loss 0)
    w.add(torch.tensor([5.0, 2.0, 3.0, 1.0, 0.25]), names, 4)
    w.add(torch.tensor([4.0, 4.0, 0.0, 1.0, 0.0]), names, 4)
    w.seconds = 2.0
    out = w.flush()
    assert out["loss"] == pytest.approx(4.5) and out["loss_a"] == pytest.approx(3.0)
    assert out["loss_b"] == pytest.approx(3.0)  # not (3 + 0) / 2: the empty batch has no b loss
    assert out["valid_frac_b"] == pytest.approx(0.125) and out["valid_frac_a"] == pytest.approx(1.0)
    assert out["molecules_per_s"] == pytest.approx(4.0)
    w.add(torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]), names, 4)
    assert "loss_b" not in w.flush()  # a window with no b at all reports no b loss, not 0


def test_window_without_fractions_keeps_the_old_rows():
    w = MetricWindow()
    w.add(torch.tensor([3.0, 1.0, 2.0]), ["a", "b"], 8)
    w.add(torch.tensor([1.0, 1.0, 0.0]), ["a", "b"], 8)
    out = w.flush()
    assert out["loss"] == 2.0 and out["loss_a"] == 1.0 and out["loss_b"] == 1.0 and "valid_frac_a" not in out


def test_step_record_omits_the_placeholder_loss():
    rec = step_record(7, torch.tensor([2.0, 2.0, 0.0, 1.0, 0.0]), ["a", "b"])
    assert rec == {"step": 7, "loss": 2.0, "loss_a": 2.0, "valid_frac_a": 1.0, "valid_frac_b": 0.0}


def _write(root, name, keys, n_bins=8, chunk=3):
    from acml_dist.data.modalities import encode_chunk, modality_dir, write_chunk, write_manifest

    out = modality_dir(root, name)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for c, start in enumerate(range(0, len(keys), chunk)):
        part = keys[start : start + chunk]
        spectra = [np.full(n_bins, i + start, np.float32) for i in range(len(part))]
        peaks = [np.array([1.0], np.float32)] * len(part)
        entries.append(write_chunk(out, c, encode_chunk(part, spectra, peaks, n_bins), len(part)))
    counts = {"written": len(keys), "rejected": 0}
    write_manifest(out, {"modality": name, "bins": {"n_bins": n_bins}, "chunks": entries, "complete": True,
                         "counts": counts})  # fmt: skip


def test_lookup_aligns_by_key_and_verifies(tmp_path):
    from acml_dist.data.modalities import ModalityLookup, modality_dir, modality_hash, read_manifest

    keys = [f"m{i}" for i in range(7)]
    _write(tmp_path, "ms", keys)
    look = ModalityLookup(tmp_path, "ms", keep=1)
    assert len(look) == 7 and "m6" in look and "x" not in look
    samples = [{"key": "m5"}, {"key": "zz"}, {"key": "m0"}, {"key": "m4"}]
    assert look.attach(samples, "ms.npy") == 3
    assert samples[0]["ms.npy"][0] == 5 and "ms.npy" not in samples[1] and samples[2]["ms.npy"][0] == 0
    assert samples[3]["ms.npy"][0] == 4  # back to an evicted chunk (keep=1): decoded again, same values
    first = modality_hash(read_manifest(tmp_path, "ms"))
    _write(tmp_path, "ms", keys[:-1])
    assert modality_hash(read_manifest(tmp_path, "ms")) != first
    chunk = modality_dir(tmp_path, "ms") / "chunk-000001.npz"
    chunk.write_bytes(chunk.read_bytes()[:-5])
    with pytest.raises(ValueError, match="sha256 differs"):
        ModalityLookup(tmp_path, "ms")
    with pytest.raises(FileNotFoundError, match="acml nmr-predict"):
        ModalityLookup(tmp_path, "nmr13c")


def test_the_corpus_manifest_counts_every_complete_modality(tmp_path):
    """`modalities/manifest.json` is rewritten whenever an output completes: each complete output's counts
    and its fraction of the dataset's molecules; an incomplete one is not listed."""
    import json

    from acml_dist.data.modalities import modality_dir, write_manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"name": "t", "counts": {"written": 20}}))
    _write(tmp_path, "ms", [f"m{i}" for i in range(5)])
    _write_images(tmp_path, ["m0", "m1", "m2", "m3"])
    write_manifest(modality_dir(tmp_path, "nmr1h"), {"modality": "nmr1h", "complete": False, "chunks": []})
    counts = json.loads((tmp_path / "modalities" / "manifest.json").read_text())
    assert counts["dataset"] == "t" and counts["molecules"] == 20
    assert sorted(counts["modalities"]) == ["image", "ms"]
    assert counts["modalities"]["ms"]["written"] == 5 and counts["modalities"]["ms"]["fraction"] == 0.25
    assert counts["modalities"]["image"]["written"] == 4 and counts["modalities"]["image"]["rejected"] == 0


def _write_images(root, keys, size=48, chunk=3):
    from acml_dist.data.modalities import encode_image_chunk, modality_dir, write_chunk, write_manifest

    out = modality_dir(root, "image")
    entries = []
    for c, start in enumerate(range(0, len(keys), chunk)):
        part = keys[start : start + chunk]
        images = [np.full((size, size), 255, np.uint8) for _ in part]
        for i, im in enumerate(images):
            im[4 + i + start : 20 + i + start, 8:40] = 0  # a bar whose place differs per molecule
        entries.append(write_chunk(out, c, encode_image_chunk(part, images, size), len(part)))
    write_manifest(out, {"modality": "image", "kind": "image", "chunks": entries, "complete": True,
                         "counts": {"written": len(keys), "rejected": 0}})  # fmt: skip


def test_image_teacher_reads_only_the_depicted_molecules_when_it_does_not_render(tmp_path):
    """With `render: false` the image CNN reads `modalities/image/` through the same lookup as the spectrum
    teachers: a molecule `acml depict` did not draw has no image (presence 0), one it drew is encoded from
    the stored depiction, the same as from the array itself."""
    from acml_dist.data.modalities import ModalityLookup, reads_modality_output
    from acml_dist.teachers import load_teacher

    assert reads_modality_output("image_cnn", {"render": False})
    assert not reads_modality_output("image_cnn", {}) and not reads_modality_output("fingerprint", {})
    assert reads_modality_output("conv1d_spectrum", {})
    _write_images(tmp_path, ["m0", "m1", "m2", "m3"])
    look = ModalityLookup(tmp_path, "image")
    samples = [{"key": k, "smiles": "CCO"} for k in ("m2", "absent", "m0")]
    assert look.attach(samples, "image.npy") == 2
    params = {"width": 4, "resolution": 32, "out_dim": 8, "random_init": True}
    no_render = {**params, "render": False}
    teacher = load_teacher("image", {"kind": "image_cnn", "modality": "image", "params": no_render})
    assert [teacher.missing_reason(s) for s in samples] == [None, "no image", None]
    got = teacher.encode_samples([samples[0], samples[2]])
    want = teacher.encode_samples([{"key": "m2", "image": samples[0]["image.npy"]},
                                   {"key": "m0", "image": samples[2]["image.npy"]}])  # fmt: skip
    assert torch.equal(got, want) and not torch.equal(got[0], got[1])
    drawing = load_teacher("image", {"kind": "image_cnn", "modality": "image", "params": params})
    assert drawing.missing_reason(samples[1]) is None  # render (the default): drawn from its SMILES


def test_a_registered_teachers_input_params_follow_the_caller_not_its_architecture(tmp_path):
    """`render` / `spectra` say where the input comes from: the caller's value wins over the stored one;
    the architecture (width, out_dim, ...) stays as trained, whatever the caller says."""
    import json

    from acml_dist.config.teachers import TeacherConfig
    from acml_dist.teachers.artifacts import config_from_artifacts

    stored = {"kind": "image_cnn", "modality": "image", "path": None,
              "params": {"width": 4, "out_dim": 8, "render": True}}  # fmt: skip
    (tmp_path / "teacher.json").write_text(json.dumps({"config": stored}))
    caller = TeacherConfig(kind="image_cnn", params={"render": False, "width": 64}, weight=2.0)
    cfg = config_from_artifacts(tmp_path, caller)
    assert cfg.params == {"width": 4, "out_dim": 8, "render": False} and cfg.weight == 2.0


def test_multimodal_teacher_group_composes():
    from acml_dist.config import load_config

    cfg = load_config("train", ["teachers=multimodal", "~teachers.ms", "teachers.nmr13c.weight=2"])
    assert list(cfg.teachers) == ["rxnfp", "morgan", "image", "nmr13c", "nmr1h"]
    assert cfg.teachers.image.kind == "image_cnn" and cfg.teachers.image.params.render is False
    assert cfg.teachers.nmr13c.weight == 2.0 and cfg.teachers.nmr1h.weight == 1.0
    assert cfg.teachers.nmr1h.path == "models:/acml-teacher-nmr1h/latest"
    assert cfg.teachers.nmr13c.kind == "cress_nmr13c" and cfg.teachers.nmr1h.kind == "conv1d_spectrum"


def test_training_time_retrieval_pools_only_molecules_with_the_modality():
    """`pooled_top1` (training's held-out metric) is evaluate's pool-128 R@1 over the molecules that have the
    modality, however few of them each loader batch holds."""
    from acml_dist.evaluate.retrieval import retrieval_table
    from acml_dist.training.metrics import pooled_top1

    rng = np.random.default_rng(0)
    g = rng.normal(size=(300, 8)).astype(np.float32)
    t = (g + rng.normal(scale=1.5, size=g.shape)).astype(np.float32)
    batches = [(g[i : i + 13], t[i : i + 13]) for i in range(0, 300, 13)]  # ~10% of 128-molecule batches
    hits, n = pooled_top1(batches)
    r1 = next(r["r@1"] for r in retrieval_table(g, t, [128], [1]) if r["direction"] == "graph->teacher")
    assert n == 300 and hits / n == pytest.approx(r1) and 0.05 < r1 < 0.95
    in_batch = np.mean([pooled_top1([b])[0] / len(b[0]) for b in batches])
    assert in_batch > r1  # ranking among 13 is easier: the number the old per-batch metric reported
    assert pooled_top1([]) == [0.0, 0.0] and pooled_top1([(g[:1], t[:1])]) == [0.0, 0.0]
