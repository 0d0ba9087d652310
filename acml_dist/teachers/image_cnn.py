"""The image teacher trained here (`acml pretrain-teacher image`): an Img2Mol-style CNN, kind `image_cnn`.

Img2Mol (Clevert et al. 2021) is a VGG-like CNN on a 224x224 grayscale depiction whose fully connected head
regresses the 512-d CDDD embedding of the molecule. Offline there is neither its checkpoint nor CDDD, so the
same recipe regresses the frozen SMILES teacher's embedding (rxnfp) instead, at a size this project can
train: a strided 5x5 stem and `blocks` conv blocks (`convs_per_block` 3x3 conv + BatchNorm + ReLU, then a
2x2 max-pool; channels width, 2 width, 4 width, ...), adaptive average pooling to 3x3, then
Linear -> ReLU -> Linear to the target's dimension (Img2Mol: 512*9*9 -> 4096 -> 4096 -> 512). `width` and
`resolution` are configurable: width 16-32 at 64-96 px trains on a 2-core CPU in minutes, width 64 at
224 px is the GPU size.

The output is the prediction of the target embedding standardised per dimension with the training set's
mean and std (stored as buffers `target_mean`, `target_std`), L2-normalised; retrieval compares it with
the standardised target embeddings by cosine. params: out_dim, width, resolution, blocks,
convs_per_block, hidden, random_init, render (default true, as img2mol: a sample without a stored image is
drawn from its SMILES)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from acml_dist.teachers.base import Teacher, TeacherError

if TYPE_CHECKING:
    import torch

    from acml_dist.config.teachers import TeacherConfig

ARCH_KEYS = ("out_dim", "width", "resolution", "blocks", "convs_per_block", "hidden")
DEFAULTS = {"out_dim": 256, "width": 32, "resolution": 96, "blocks": 3, "convs_per_block": 1, "hidden": 0}


def arch(params: dict[str, Any]) -> dict[str, int]:
    """The architecture parameters with defaults (hidden 0: 32 x width)."""
    a = {k: int(params.get(k, DEFAULTS[k]) or DEFAULTS[k]) for k in ARCH_KEYS}
    a["hidden"] = a["hidden"] or 32 * a["width"]
    return a


def build_image_cnn(
    out_dim: int = 256,
    width: int = 32,
    resolution: int = 96,
    blocks: int = 3,
    convs_per_block: int = 1,
    hidden: int = 0,
) -> torch.nn.Module:
    import torch
    from torch import nn

    hidden = hidden or 32 * width
    if resolution < 32 or width < 1 or blocks < 1:
        raise TeacherError(f"image_cnn: need resolution >= 32, width >= 1, blocks >= 1 (got {resolution}, "
                           f"{width}, {blocks})")  # fmt: skip
    layers: list[nn.Module] = [
        nn.Conv2d(1, width, 5, stride=2, padding=2), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    ]  # fmt: skip
    c_in = width
    for b in range(blocks):
        c_out = width * 2 ** (b + 1)
        for _ in range(convs_per_block):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.MaxPool2d(2))

    class ImageCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.resolution = resolution
            self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(3))
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(c_in * 9, hidden), nn.ReLU(inplace=True), nn.Dropout(0.1),
                nn.Linear(hidden, out_dim),
            )  # fmt: skip
            self.register_buffer("target_mean", torch.zeros(out_dim))
            self.register_buffer("target_std", torch.ones(out_dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """(B, 1, r, r) in [0, 1], paper = 1 -> the standardised target prediction (B, out_dim)."""
            return self.head(self.features(1.0 - x))  # ink = 1: blank paper gives zero activations

    return ImageCNN()


def to_resolution(images: np.ndarray, resolution: int, batch: int = 512) -> np.ndarray:
    """uint8 (N, S, S) -> uint8 (N, r, r) by area averaging (anti-aliased downsampling)."""
    import torch

    if images.shape[-1] == resolution:
        return np.ascontiguousarray(images)
    out = np.empty((len(images), resolution, resolution), np.uint8)
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.array(images[start : start + batch])).float().unsqueeze(1)
        y = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="area")
        out[start : start + batch] = y.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def stored_image(sample: dict[str, Any], member: str = "image.npy") -> Any:
    """The depiction a sample carries: `member` (attached from `modalities/<modality>/` as
    `<modality>.npy`), else its `image` field (an array, or PNG bytes); None when it has neither."""
    return sample.get(member, sample.get("image"))


def sample_image(sample: dict[str, Any], member: str = "image.npy") -> np.ndarray:
    """A sample's depiction as preprocessed uint8 (S, S): its stored array (`stored_image`), else a stored
    `image.png` (fitted as Img2Mol does), else drawn from its SMILES."""
    from PIL import Image

    from acml_dist.chem.depict import depict_array, fit_image

    stored = stored_image(sample, member)
    if stored is not None and not isinstance(stored, bytes):
        return np.asarray(stored, np.uint8)
    png = sample.get("image.png") or sample.get("image")
    if png is not None:
        return np.asarray(fit_image(Image.open(io.BytesIO(png))), np.uint8)
    from acml_dist.chem.parse import mol_from_smiles

    mol = mol_from_smiles(sample["smiles"])
    if mol is None:
        raise TeacherError(f"image_cnn: cannot draw {sample['smiles']!r}")
    return depict_array(mol)


class ImageCNNTeacher(Teacher):
    kind = "image_cnn"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        from acml_dist.teachers.checkpoint import load_strict, read_state_dict
        from acml_dist.teachers.published import _checkpoint_file

        self.arch = arch(cfg.params)
        super().__init__(name, cfg, cfg.modality or "image", self.arch["out_dim"])
        model = build_image_cnn(**self.arch)
        ckpt = _checkpoint_file(name, cfg, self.kind)
        if ckpt is not None:
            load_strict(model, read_state_dict(ckpt), f"the image CNN ({ckpt})")
        self._finish_model(model)
        self.render = bool(cfg.params.get("render", True))
        self.member = f"{self.modality}.npy"  # where the embedding cache attaches a modality output's image

    def missing_reason(self, sample: dict[str, Any]) -> Optional[str]:
        stored = stored_image(sample, self.member)
        if stored is not None or "image.png" in sample or (self.render and sample.get("smiles")):
            return None
        return "no image"

    def prepare(self, samples: list[dict[str, Any]]) -> torch.Tensor:
        import torch

        images = np.stack([sample_image(s, self.member) for s in samples])
        small = to_resolution(images, self.arch["resolution"])
        return torch.from_numpy(small).float().div_(255.0).unsqueeze(1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        import torch

        assert self.model is not None
        out = self.model(inputs.to(self.device, self.dtype))
        return torch.nn.functional.normalize(out.float(), dim=-1)
