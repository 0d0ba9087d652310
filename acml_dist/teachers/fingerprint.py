"""Morgan (ECFP) fingerprint teacher: deterministic, no weights, cheap; bits or counts as a float vector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from acml_dist.teachers.base import Teacher, params_hash, rdkit_missing_reason

if TYPE_CHECKING:
    import torch

    from acml_dist.config.teachers import TeacherConfig


class FingerprintTeacher(Teacher):
    kind = "fingerprint"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        from rdkit.Chem import rdFingerprintGenerator

        params = dict(cfg.params or {})
        self.radius = int(params.get("radius", 2))
        self.n_bits = int(params.get("n_bits", 2048))
        self.counts = bool(params.get("counts", False))
        self.chirality = bool(params.get("chirality", False))
        super().__init__(name, cfg, cfg.modality or "fingerprint", self.n_bits)
        # Fingerprints are exact in fp32 and cheap on CPU: never move them to a GPU.
        self.device = "cpu"
        self._gen = rdFingerprintGenerator.GetMorganGenerator(
            radius=self.radius, fpSize=self.n_bits, includeChirality=self.chirality
        )
        self._hash = params_hash(
            self.kind,
            {
                "radius": self.radius,
                "n_bits": self.n_bits,
                "counts": self.counts,
                "chirality": self.chirality,
            },
        )

    def missing_reason(self, sample: dict[str, Any]) -> Optional[str]:
        return rdkit_missing_reason(sample)

    def forward(self, inputs: list[str]) -> torch.Tensor:
        import numpy as np
        import torch
        from rdkit import Chem

        out = np.zeros((len(inputs), self.n_bits), dtype=np.float32)
        for i, smi in enumerate(inputs):
            mol = Chem.MolFromSmiles(smi)
            if mol is None:
                raise ValueError(f"fingerprint teacher {self.name}: cannot parse SMILES {smi!r}")
            fp = (
                self._gen.GetCountFingerprintAsNumPy(mol)
                if self.counts
                else self._gen.GetFingerprintAsNumPy(mol)
            )
            out[i] = fp
        return torch.from_numpy(out)
