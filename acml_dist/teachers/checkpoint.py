"""Strict checkpoint loading for published architectures: map a user's file onto our module, or explain.

The error lists every missing, unexpected and shape-mismatched key at once, so a user with a slightly
different checkpoint sees the whole picture instead of the first failure."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acml_dist.teachers.base import TeacherError

if TYPE_CHECKING:
    import torch


class CheckpointMismatchError(TeacherError):
    def __init__(
        self,
        what: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"checkpoint does not fit {what}:"]
        if missing:
            lines.append(f"  {len(missing)} missing keys: " + ", ".join(missing))
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected keys: " + ", ".join(unexpected))
        for key, want, got in mismatched:
            lines.append(f"  shape mismatch {key}: model {list(want)}, checkpoint {list(got)}")
        super().__init__("\n".join(lines))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .pt/.pth/.ckpt/.bin/.safetensors file; unwraps `state_dict` / `model` wrappers."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(path))
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickled objects other than tensors: refuse rather than execute code
            raise TeacherError(
                f"{path}: cannot read as a weights-only checkpoint ({exc}); save its state_dict() instead"
            ) from exc
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise TeacherError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if hasattr(v, "shape")}


def load_strict(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    what: str,
    rename: Callable[[str], str | None] = lambda k: k,
    ignore: Iterable[str] = (),
) -> None:
    """Load `state` into `module` after renaming keys (None drops a key); any other difference raises."""
    patterns = [re.compile(p) for p in ignore]
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = rename(key)
        if new is None or any(p.fullmatch(new) for p in patterns):
            continue
        mapped[new] = value
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in mapped and not any(p.fullmatch(k) for p in patterns))
    unexpected = sorted(k for k in mapped if k not in expected)
    mismatched = [
        (k, tuple(expected[k].shape), tuple(v.shape))
        for k, v in sorted(mapped.items())
        if k in expected and tuple(expected[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(what, missing, unexpected, mismatched)
    module.load_state_dict(mapped, strict=not patterns)
