"""Published teacher architectures with their exact shapes (DESIGN.md section 2), and strict loaders.

- CReSS (Yang et al. 2021, github.com/Qihoo360/CReSS): SMILES RoBERTa (6 layers, 12 heads, hidden 768,
  vocab 181, 505 positions, max length 300) -> CLS -> Linear(768, 768) -> L2 norm; and the 13C NMR encoder
  (4,000 bins, -50..350 ppm at 0.1 ppm) Conv1d(1->32, k=400, s=200, p=200) -> 2 residual MLP blocks (672)
  -> Linear(672, 768) -> L2 norm. Their `.pth` is the state dict of the joint CLIP model
  (`smiles_model.smiles_model.*`, `smiles_model.model.*` (an alias of the same RoBERTa),
  `smiles_model.dense.*`, `nmr_model.model.*`, `logit_scale`); each teacher takes its half of it.
- Img2Mol (Clevert et al. 2021, github.com/bayer-science-for-a-better-life/Img2Mol): 224x224 grayscale ->
  VGG-like CNN -> 512*9*9 -> 4096 -> 4096 -> 512, tanh (a Lightning checkpoint, `state_dict` of
  `features.*` / `classifier.*`).
Those checkpoints are not distributed with the project: `teachers.<name>.path` must name the user's file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from acml_dist.teachers.base import Teacher, TeacherError
from acml_dist.teachers.checkpoint import load_strict, read_state_dict

if TYPE_CHECKING:
    import torch

    from acml_dist.config.teachers import TeacherConfig

CRESS_SMILES = {
    "vocab_size": 181,
    "max_position_embeddings": 505,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "type_vocab_size": 1,
}
CRESS_MAX_LEN = 300
NMR_BINS, NMR_MIN, NMR_MAX, NMR_SCALE = 4000, -50.0, 350.0, 10
IMG2MOL_LAYERS: list[Any] = [
    (128, 7, 3, 4), (256, 5, 1, 1), (384, 5, 1, 1), "M", (384, 3, 1, 1), (384, 3, 1, 1), "M",
    (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), "M",
]  # fmt: skip


def _checkpoint_file(name: str, cfg: TeacherConfig, kind: str) -> Optional[Path]:
    """The checkpoint file (a file, or the single weights file in a directory); None when not configured."""
    if cfg.path is None:
        if cfg.params.get("random_init"):
            return None
        raise TeacherError(
            f"teacher {name} ({kind}): the published checkpoint is not available offline; set "
            f"teachers.{name}.path to your downloaded file (or params.random_init=true for a smoke test)"
        )
    path = Path(cfg.path)
    if path.is_dir():
        files = [
            p for ext in ("pth", "pt", "ckpt", "bin", "safetensors") for p in sorted(path.glob(f"*.{ext}"))
        ]
        if len(files) != 1:
            raise TeacherError(f"teacher {name}: expected one weights file in {path}, found {files}")
        path = files[0]
    return path


# -- CReSS SMILES ---------------------------------------------------------------------------------------
def build_cress_smiles(**overrides: Any) -> torch.nn.Module:
    from torch import nn
    from transformers import RobertaConfig, RobertaModel

    class CressSmilesEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            cfg = RobertaConfig(**{**CRESS_SMILES, **overrides})
            self.smiles_model = RobertaModel(cfg)  # with its pooler, as in the published checkpoint
            self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.smiles_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return nn.functional.normalize(self.dense(hidden[:, 0]), dim=-1)

    return CressSmilesEncoder()


def cress_smiles_rename(key: str) -> Optional[str]:
    if key.startswith("nmr_model.") or key.endswith("logit_scale"):
        return None
    for prefix in ("smiles_model.smiles_model.", "smiles_model.dense."):
        if key.startswith(prefix):
            return key[len("smiles_model.") :]
    if key.startswith("smiles_model.model.") or key.startswith("model."):
        return None  # the same RoBERTa registered a second time under `model`
    return key


class CressSmilesTeacher(Teacher):
    kind = "cress_smiles"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        arch = {k: v for k, v in cfg.params.items() if k in CRESS_SMILES}
        super().__init__(name, cfg, cfg.modality or "smiles", int(arch.get("hidden_size", 768)))
        model = build_cress_smiles(**arch)
        ckpt = _checkpoint_file(name, cfg, self.kind)
        if ckpt is not None:
            load_strict(
                model,
                read_state_dict(ckpt),
                f"the CReSS SMILES encoder ({ckpt})",
                rename=cress_smiles_rename,
                ignore=[r"smiles_model\.embeddings\.position_ids"],
            )
        self._finish_model(model)
        self.max_length = min(int(cfg.params.get("max_len", CRESS_MAX_LEN)), CRESS_MAX_LEN)
        tok_dir = cfg.params.get("tokenizer") or (ckpt.parent if ckpt is not None else None)
        self.tokenizer = None
        if tok_dir is not None and (Path(tok_dir) / "vocab.json").exists():
            from transformers import RobertaTokenizer

            self.tokenizer = RobertaTokenizer.from_pretrained(str(tok_dir))

    def prepare(self, samples: list[dict[str, Any]]) -> Any:
        if self.tokenizer is None:
            raise TeacherError(
                f"teacher {self.name}: no CReSS tokenizer; set params.tokenizer to the directory with its "
                "vocab.json and merges.txt (CReSS `roberta_tokenizer_path`)"
            )
        enc = self.tokenizer(
            [s["smiles"] for s in samples],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return enc["input_ids"], enc["attention_mask"]

    def forward(self, inputs: Any) -> torch.Tensor:
        assert self.model is not None
        ids, mask = (t.to(self.device) for t in inputs)
        return self.model(ids, mask)


# -- CReSS 13C NMR ---------------------------------------------------------------------------------------
def build_cress_nmr(channels: int = 32, out_dim: int = 768) -> torch.nn.Module:
    from torch import nn

    class ConvIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Conv1d(1, channels, kernel_size=400, stride=200, padding=200)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x.unsqueeze(1))

    class MlpBlock(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.block(x)

    class CressNMREncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            hidden = channels * 21  # 4000 bins -> 21 positions after the strided conv
            self.model = nn.Sequential(
                ConvIn(), nn.ReLU(), nn.Flatten(), MlpBlock(hidden), nn.ReLU(), MlpBlock(hidden), nn.ReLU(),
                nn.Linear(hidden, out_dim),
            )  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.model(x), dim=-1)

    return CressNMREncoder()


def bin_nmr13c(values: np.ndarray) -> np.ndarray:
    """A 13C peak list (ppm) -> CReSS's 4,000-bin 0/1 vector (out-of-range peaks go to the end bins).
    An array already of length 4,000 is taken as binned."""
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size == NMR_BINS:
        return values
    out = np.zeros(NMR_BINS, dtype=np.float32)
    idx = np.clip(np.round((values - NMR_MIN) * NMR_SCALE).astype(np.int64), 0, NMR_BINS - 1)
    out[idx] = 1.0
    return out


class CressNMR13CTeacher(Teacher):
    kind = "cress_nmr13c"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        super().__init__(name, cfg, cfg.modality or "nmr13c", 768)
        model = build_cress_nmr()
        ckpt = _checkpoint_file(name, cfg, self.kind)
        if ckpt is not None:

            def rename(key: str) -> Optional[str]:
                if key.startswith("smiles_model.") or key.endswith("logit_scale"):
                    return None
                return key[len("nmr_model.") :] if key.startswith("nmr_model.") else key

            load_strict(model, read_state_dict(ckpt), f"the CReSS 13C NMR encoder ({ckpt})", rename=rename)
        self._finish_model(model)

    def missing_reason(self, sample: dict[str, Any]) -> Optional[str]:
        return None if "nmr13c.npy" in sample else "no 13C spectrum"

    def prepare(self, samples: list[dict[str, Any]]) -> torch.Tensor:
        import torch

        rows = []
        for s in samples:
            raw = s["nmr13c.npy"]
            arr = np.load(io.BytesIO(raw), allow_pickle=False) if isinstance(raw, bytes) else raw
            rows.append(bin_nmr13c(arr))
        return torch.from_numpy(np.stack(rows))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        assert self.model is not None
        return self.model(inputs.to(self.device, self.dtype))


# -- Img2Mol -----------------------------------------------------------------------------------------------
def build_img2mol() -> torch.nn.Module:
    from torch import nn

    layers: list[nn.Module] = []
    in_ch = 1
    for v in IMG2MOL_LAYERS:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            units, k, s, p = v
            layers += [nn.Conv2d(in_ch, units, kernel_size=k, stride=s, padding=p), nn.ReLU(inplace=True)]
            in_ch = units

    class Img2MolCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(
                nn.Linear(512 * 9 * 9, 4096), nn.ReLU(True), nn.Dropout(p=0.0),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=0.0),
                nn.Linear(4096, 512), nn.Tanh(),
            )  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x).flatten(1))

    return Img2MolCNN()


def image_tensor(png: Optional[bytes], smiles: Optional[str]) -> np.ndarray:
    """A (1, 224, 224) float image in [0, 1], black on white, molecule centred with a white margin as in
    Img2Mol's `fit_image` (deterministic: no augmentation). Without a stored image, RDKit draws one."""
    from PIL import Image

    from acml_dist.chem.depict import fit_image

    if png is not None:
        img = Image.open(io.BytesIO(png))
        if img.mode == "RGBA":
            bg = Image.new("RGB", img.size, (255, 255, 255))
            bg.paste(img, (0, 0), img)
            img = bg
    else:
        from rdkit import Chem
        from rdkit.Chem import Draw

        img = Draw.MolToImage(Chem.MolFromSmiles(smiles), size=(224, 224))
    canvas = fit_image(img, 224, 15)
    return (np.asarray(canvas, dtype=np.float32) / 255.0)[None]


class Img2MolTeacher(Teacher):
    kind = "img2mol"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        super().__init__(name, cfg, cfg.modality or "image", 512)
        model = build_img2mol()
        ckpt = _checkpoint_file(name, cfg, self.kind)
        if ckpt is not None:
            load_strict(model, read_state_dict(ckpt), f"the Img2Mol CNN ({ckpt})")
        self._finish_model(model)
        self.render = bool(cfg.params.get("render", True))

    def missing_reason(self, sample: dict[str, Any]) -> Optional[str]:
        if "image.png" in sample or (self.render and sample.get("smiles")):
            return None
        return "no image"

    def prepare(self, samples: list[dict[str, Any]]) -> torch.Tensor:
        import torch

        return torch.from_numpy(
            np.stack([image_tensor(s.get("image.png"), s.get("smiles")) for s in samples])
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        assert self.model is not None
        return self.model(inputs.to(self.device, self.dtype))
