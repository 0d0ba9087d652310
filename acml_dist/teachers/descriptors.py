"""RDKit 2-D descriptor teacher: physico-chemical properties (logP, TPSA, sizes, counts, charges) as a
modality, so the graph encoder is taught what its structural teachers (SMILES LM, fingerprints) leave
implicit. Deterministic, no weights, CPU only.

Values span many decades (Ipc reaches 1e30), so each is read as sign(x) * log1p(|x|): a fixed, parameter-free
transform (no statistics of one corpus baked in), and a descriptor RDKit cannot compute reads 0. The
teacher's trainable head in the ACML model sees these vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from acml_dist.teachers.base import Teacher, params_hash, rdkit_missing_reason

if TYPE_CHECKING:
    import numpy as np
    import torch

    from acml_dist.config.teachers import TeacherConfig


def squash(values: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|) as float32, NaN -> 0."""
    import numpy as np

    out = np.sign(values) * np.log1p(np.abs(values))
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


class DescriptorTeacher(Teacher):
    kind = "descriptors"

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        from acml_dist.chem.descriptors import descriptor_names

        # The descriptor list is RDKit's: another RDKit version may add some, which changes the hash (and so
        # invalidates a cache made with the other list) rather than misaligning columns.
        self.names = descriptor_names()
        super().__init__(name, cfg, cfg.modality or "descriptors", len(self.names))
        self.device = "cpu"
        self._hash = params_hash(self.kind, {"names": self.names, "transform": "signed_log1p"})

    def missing_reason(self, sample: dict[str, Any]) -> Optional[str]:
        return rdkit_missing_reason(sample)

    def forward(self, inputs: list[str]) -> torch.Tensor:
        import numpy as np
        import torch

        from acml_dist.chem.descriptors import rdkit_2d

        values = rdkit_2d(inputs)
        unparsed = np.isnan(values).all(axis=1)
        if unparsed.any():
            bad = inputs[int(np.flatnonzero(unparsed)[0])]
            raise ValueError(f"descriptor teacher {self.name}: cannot parse SMILES {bad!r}")
        return torch.from_numpy(squash(values))
