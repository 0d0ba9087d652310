"""The image modality's pieces: Img2Mol-preprocessed depictions, image chunks, the online augmentation,
the CNN's shapes and the `image_cnn` teacher kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acml_dist.chem.depict import depict_array
from acml_dist.chem.parse import mol_from_smiles
from acml_dist.teachers.image_cnn import build_image_cnn, to_resolution
from acml_dist.training.image_pretrain import augment, image_loss


def test_depiction_is_preprocessed_uint8_with_a_white_border_and_deterministic() -> None:
    mol = mol_from_smiles("CC(=O)Nc1ccc(O)cc1")
    a, b = depict_array(mol), depict_array(mol)
    assert a.shape == (224, 224) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert (a[:10] == 255).all() and (a[-10:] == 255).all() and (a[:, :10] == 255).all()
    assert a.min() == 0 and (a < 128).mean() > 0.005  # autocontrast: black ink present
    wide = depict_array(mol, border=60)
    assert (wide < 128).sum() < (a < 128).sum()  # a wider border draws the molecule smaller
    assert not np.array_equal(depict_array(mol_from_smiles("c1ccccc1O")), a)


def test_image_chunk_round_trip(tmp_path) -> None:
    from acml_dist.data.modalities import encode_image_chunk, write_chunk

    imgs = [np.full((32, 32), 255, np.uint8), np.zeros((32, 32), np.uint8)]
    data = encode_image_chunk(["a", "b"], imgs, 32)
    assert data == encode_image_chunk(["a", "b"], imgs, 32)  # same arrays, same bytes
    entry = write_chunk(tmp_path, 0, data, 2)
    with np.load(tmp_path / entry["name"], allow_pickle=False) as z:
        assert list(z["keys"]) == ["a", "b"] and z["images"].dtype == np.uint8
        assert np.array_equal(z["images"][1], imgs[1])
    with pytest.raises(ValueError, match="32x32"):
        encode_image_chunk(["a"], [np.zeros((16, 16), np.uint8)], 32)


def test_augmentation_rotates_scales_and_changes_line_width_keeping_paper_white() -> None:
    img = to_resolution(depict_array(mol_from_smiles("c1ccc2ccccc2c1"))[None], 96)
    x = torch.from_numpy(img).float().div(255).unsqueeze(1).repeat(8, 1, 1, 1)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 + 1e-6
    assert all(not torch.allclose(out[i], x[i], atol=0.05) for i in range(8))  # every sample changed
    assert not torch.allclose(out[0], out[1], atol=0.05)  # per-sample parameters
    again = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded
    blank = torch.ones(4, 1, 64, 64)
    assert torch.allclose(augment(blank, torch.Generator().manual_seed(1)), blank)  # white stays white
    ink = (1 - x).sum()
    thick = augment(x, torch.Generator().manual_seed(2), rotation=0, scale=(1, 1), line_width=1.0)
    assert (1 - thick).sum() != pytest.approx(float(ink), rel=1e-3)


def test_cnn_shapes_any_resolution_and_loss_choices() -> None:
    model = build_image_cnn(out_dim=40, width=4, resolution=64)
    for r in (64, 96):
        assert model(torch.rand(3, 1, r, r)).shape == (3, 40)
    pred, z = torch.randn(5, 40), torch.randn(5, 40)
    assert image_loss(pred, pred * 2, "cosine") == pytest.approx(0.0, abs=1e-5)
    assert float(image_loss(pred, z, "cosine_nce")) > float(image_loss(pred, z, "cosine"))
    assert float(image_loss(pred, z, "mse")) > 0
    with pytest.raises(ValueError, match="image loss"):
        image_loss(pred, z, "hinge")


def test_image_cnn_teacher_reads_arrays_pngs_and_smiles() -> None:
    from acml_dist.chem.depict import depict_png
    from acml_dist.teachers import load_teacher

    params = {"out_dim": 16, "width": 4, "resolution": 64, "random_init": True}
    t = load_teacher("image", {"kind": "image_cnn", "modality": "image", "params": params})
    mol = mol_from_smiles("c1ccccc1O")
    from_array = t.encode_samples([{"image": depict_array(mol)}]).numpy()
    from_smiles = t.encode_smiles(["c1ccccc1O"]).numpy()
    from_png = t.encode_samples([{"image.png": depict_png(mol)}]).numpy()
    assert from_array.shape == (1, 16) and np.allclose(from_array, from_smiles, atol=1e-6)
    assert np.allclose(from_png, from_array, atol=0.05)  # RDKit's drawing fitted the same way
    assert t.missing_reason({"key": "k"}) == "no image"
