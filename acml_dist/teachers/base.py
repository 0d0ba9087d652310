"""The frozen-teacher interface: every unimodal encoder (SMILES LM, fingerprint, NMR, image) sits behind it.

A teacher turns decoded shard samples (dicts with `key`, `smiles`, `meta`, and modality payloads such as
`image.png` / `nmr13c.npy`) into model input (`prepare`), runs its frozen network (`forward`) and returns
float32 CPU embeddings (`encode_samples` / `encode_smiles`). Weights never receive gradients: every
parameter has `requires_grad=False`, the module stays in `eval()`, and encoding runs under `no_grad`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Optional, Union

from omegaconf import DictConfig, OmegaConf

from acml_dist.config.teachers import TeacherConfig
from acml_dist.errors import InputError

if TYPE_CHECKING:
    import torch


class TeacherError(InputError, RuntimeError):
    """A teacher could not be located, loaded or applied; the message says what to do."""


def as_teacher_config(cfg: Union[TeacherConfig, DictConfig, dict[str, Any], None]) -> TeacherConfig:
    """A plain TeacherConfig dataclass from a DictConfig / dict / dataclass (Ray actors get plain objects)."""
    if cfg is None:
        return TeacherConfig()
    if isinstance(cfg, TeacherConfig):
        return cfg
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    known = {f.name for f in fields(TeacherConfig)}
    unknown = set(data) - known
    if unknown:
        raise TeacherError(f"unknown teacher config keys {sorted(unknown)}; known: {sorted(known)}")
    return TeacherConfig(**data)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def default_dtype(device: str) -> torch.dtype:
    """bf16 on GPU (fast, range-safe), fp32 on CPU (bf16 matmuls are slow there)."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def state_dict_hash(module: torch.nn.Module) -> str:
    """sha256 over the sorted state dict (names, shapes, fp32 bytes): independent of device and bf16 cast."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu()
        if t.is_floating_point():
            t = t.to(torch.float32)
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def params_hash(kind: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps({"kind": kind, **params}, sort_keys=True, default=str).encode()
    ).hexdigest()


def rdkit_missing_reason(sample: dict[str, Any]) -> Optional[str]:
    """`missing_reason` of a teacher computed by RDKit from the SMILES (fingerprints, descriptors)."""
    from rdkit import Chem

    smiles = sample.get("smiles")
    if not smiles:
        return "no smiles"
    return None if Chem.MolFromSmiles(smiles) is not None else "unparsable smiles"


class Teacher:
    """Base class: subclasses set `kind`, `modality`, `dim`, `model`; implement `prepare`, `forward`."""

    kind: str = "base"

    def __init__(self, name: str, cfg: TeacherConfig, modality: str, dim: int) -> None:
        self.name = name
        self.cfg = cfg
        self.modality = modality
        self.dim = dim
        self.device = resolve_device(cfg.device)
        self.dtype = default_dtype(self.device)
        self.batch_size = int(cfg.batch_size)
        self.model: Optional[torch.nn.Module] = None
        self._hash: Optional[str] = None

    # -- set-up ---------------------------------------------------------------------------------------
    def _finish_model(self, model: torch.nn.Module) -> None:
        """Hash in fp32, then freeze and move to the run device/dtype."""
        self._hash = state_dict_hash(model)
        self.model = freeze(model).to(device=self.device, dtype=self.dtype)

    def weights_hash(self) -> str:
        if self._hash is None:
            raise TeacherError(f"teacher {self.name}: no weights hash (model not loaded)")
        return self._hash

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "modality": self.modality,
            "dim": self.dim,
            "weights_hash": self.weights_hash(),
        }

    # -- per-sample hooks ------------------------------------------------------------------------------
    def missing_reason(self, sample: dict[str, Any]) -> Optional[str]:
        """Why this sample has no input for this modality (None: it has one)."""
        return None if sample.get("smiles") else "no smiles"

    def prepare(self, samples: list[dict[str, Any]]) -> Any:
        """Model input for a batch of samples; SMILES teachers read `smiles`."""
        return [s["smiles"] for s in samples]

    def forward(self, inputs: Any) -> torch.Tensor:
        raise NotImplementedError

    def input_fn(self) -> Optional[Callable[[list[str]], Any]]:
        """A picklable SMILES -> model-input callable for loader workers (`make_loader(inputs=...)`), or
        None where inputs are made from samples in this process only."""
        return None

    def encode_inputs(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Embeddings of inputs made by `input_fn`, left on the teacher's device in its dtype: no copy
        back to the host, so a training loop does not wait on the device here."""
        import torch

        if self.model is not None and self.model.training:
            self.model.eval()
        n = int(inputs[0].shape[0])
        if n == 0:
            return torch.zeros((0, self.dim), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            outs = [
                self.forward(tuple(t[start : start + self.batch_size] for t in inputs))
                for start in range(0, n, self.batch_size)
            ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    # -- encoding --------------------------------------------------------------------------------------
    def encode_samples(self, samples: list[dict[str, Any]]) -> torch.Tensor:
        """Embeddings (len(samples), dim) float32 on CPU, computed in chunks of `batch_size`."""
        import torch

        if self.model is not None and self.model.training:
            self.model.eval()  # someone called .train() on us: teachers stay in eval mode
        outs = []
        with torch.no_grad():
            for start in range(0, len(samples), self.batch_size):
                chunk = samples[start : start + self.batch_size]
                out = self.forward(self.prepare(chunk))
                outs.append(out.detach().to("cpu", torch.float32))
        if not outs:
            return torch.zeros((0, self.dim), dtype=torch.float32)
        return torch.cat(outs)

    def encode_smiles(self, smiles: list[str]) -> torch.Tensor:
        return self.encode_samples([{"smiles": s} for s in smiles])

    def parameters(self) -> list[torch.nn.Parameter]:
        return [] if self.model is None else list(self.model.parameters())
