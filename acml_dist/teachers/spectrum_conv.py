"""The 1-D convolutional spectrum encoder of ACML for 1H NMR and mass spectra (DESIGN.md section 2:
Conv1d 1->32->16->8->1, kernel 7), as a frozen teacher kind `conv1d_spectrum`.

The published ACML encoders are the encoder halves of 1-D conv autoencoders; here the same conv stack
(stride 1, padding 3, so the length stays `n_bins`) is followed by Linear(n_bins, out_dim) and an L2 norm,
and is trained CReSS-style (`training/nmr_pretrain.py`). Weights come from `cfg.path` (a state dict file,
e.g. a registered `acml-teacher-<name>`); `params`: n_bins (required), out_dim (768), random_init."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from acml_dist.teachers.base import Teacher, TeacherError

if TYPE_CHECKING:
    import torch

    from acml_dist.config.teachers import TeacherConfig

CHANNELS = (32, 16, 8, 1)
KERNEL = 7


def build_conv1d_encoder(n_bins: int, out_dim: int = 768) -> torch.nn.Module:
    from torch import nn

    class Conv1dSpectrumEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in = 1
            for i, c in enumerate(CHANNELS):
                layers.append(nn.Conv1d(c_in, c, kernel_size=KERNEL, padding=KERNEL // 2))
                if i < len(CHANNELS) - 1:
                    layers.append(nn.ReLU())
                c_in = c
            self.conv = nn.Sequential(*layers)
            self.head = nn.Linear(n_bins, out_dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.head(self.conv(x.unsqueeze(1)).squeeze(1)), dim=-1)

    return Conv1dSpectrumEncoder()


class Conv1dSpectrumTeacher(Teacher):
    kind = "conv1d_spectrum"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        from acml_dist.teachers.checkpoint import load_strict, read_state_dict
        from acml_dist.teachers.published import _checkpoint_file

        if not cfg.params.get("n_bins"):
            raise TeacherError(f"teacher {name} ({self.kind}): params.n_bins (spectrum length) is required")
        self.n_bins = int(cfg.params["n_bins"])
        out_dim = int(cfg.params.get("out_dim", 768))
        super().__init__(name, cfg, cfg.modality or "ms", out_dim)
        model = build_conv1d_encoder(self.n_bins, out_dim)
        ckpt = _checkpoint_file(name, cfg, self.kind)
        if ckpt is not None:
            load_strict(model, read_state_dict(ckpt), f"the 1-D conv {self.modality} encoder ({ckpt})")
        self._finish_model(model)

    def missing_reason(self, sample: dict[str, Any]) -> Optional[str]:
        return None if f"{self.modality}.npy" in sample else f"no {self.modality} spectrum"

    def prepare(self, samples: list[dict[str, Any]]) -> torch.Tensor:
        import torch

        rows = []
        for s in samples:
            raw = s[f"{self.modality}.npy"]
            arr = np.load(io.BytesIO(raw), allow_pickle=False) if isinstance(raw, bytes) else np.asarray(raw)
            arr = np.asarray(arr, dtype=np.float32).ravel()
            if arr.size != self.n_bins:
                raise TeacherError(
                    f"teacher {self.name}: {self.modality} spectrum of {arr.size} bins, not {self.n_bins}"
                )
            rows.append(arr)
        return torch.from_numpy(np.stack(rows))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        assert self.model is not None
        return self.model(inputs.to(self.device, self.dtype))
