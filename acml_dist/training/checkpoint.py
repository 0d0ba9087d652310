"""Checkpoints of a training run: DeepSpeed's engine state plus the trainer's client state, per-rank RNG,
every load weights-only; and the NaN/Inf guard whose counters the checkpoint carries."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from acml_dist.errors import UnsafeFileError
from acml_dist.log import get_logger

log = get_logger("train")


class TooManyBadSteps(RuntimeError):
    """K consecutive non-finite losses: the run stops instead of training on garbage."""


class BadStepGuard:
    """Counts consecutive non-finite losses; `check(finite)` says whether to skip, raises at the limit."""

    def __init__(self, limit: int, in_a_row: int = 0, total: int = 0) -> None:
        self.limit, self.in_a_row, self.total = limit, in_a_row, total

    def check(self, finite: bool, step: int) -> bool:
        if finite:
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        self.total += 1
        log.warning("step %d: non-finite loss, step skipped (%d in a row)", step, self.in_a_row)
        if self.in_a_row >= self.limit:
            raise TooManyBadSteps(
                f"{self.in_a_row} consecutive non-finite losses at step {step} (trainer.max_bad_steps="
                f"{self.limit}): stopping. Lower trainer.lr or check the inputs, then resume."
            )
        return True


# ------------------------------------------------------------------------------------------ checkpoints
#
# Nothing in a run folder is unpickled: every torch.load here and inside DeepSpeed's load_checkpoint runs
# with weights_only=True (tensors, containers, numbers, strings), plus the few plain-data classes DeepSpeed
# writes into its ZeRO optimizer states. A file that holds anything else is refused with UnsafeFileError.


def _deepspeed_safe_globals() -> list[Any]:
    """DeepSpeed's plain-data classes in its checkpoints (loss-scaler state, the ZeRO stage enum, fragment
    offsets); weights_only rebuilds only these, setting their attributes, and runs none of their code."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


@contextmanager
def weights_only_loads(what: str | Callable[[], str]) -> Iterator[None]:
    """Every torch.load in the block is weights_only (TORCH_FORCE_WEIGHTS_ONLY_LOAD, which overrides a
    caller's weights_only=False); an unpickling refusal becomes UnsafeFileError naming `what` (the file, or
    a callable that says which file was being read)."""
    import pickle

    import torch

    saved = {k: os.environ.get(k) for k in (_FORCE, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ[_FORCE] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        with torch.serialization.safe_globals(_deepspeed_safe_globals()):
            yield
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        detail = f"it calls or builds {found.group(1)}" if found else str(exc).strip().splitlines()[-1][:200]
        name = what() if callable(what) else what
        raise UnsafeFileError(
            f"{name}: refused to load, it holds objects other than tensors and plain data (unpickling it "
            f"could run code): {detail}. Inspect the run folder; resume=false starts afresh without it."
        ) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def rng_state() -> dict[str, Any]:
    """This rank's RNG state as tensors and plain numbers (loads with weights_only=True)."""
    import random

    import numpy as np
    import torch

    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),  # (version, tuple of 625 ints, None)
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_has_gauss": int(np_state["has_gauss"]),
        "numpy_gauss": float(np_state["gauss"]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    key = state["numpy_key"].numpy().astype(np.uint32)
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": key, "pos": state["numpy_pos"]},
            "has_gauss": state["numpy_has_gauss"],
            "gauss": state["numpy_gauss"],
        }
    )
    torch.set_rng_state(state["torch"])


def save_checkpoint(engine: Any, ckpt_dir: Path, step: int, state: dict[str, Any], rank: int) -> None:
    """DeepSpeed tag `stepNNNNNNNN` with `state` (a trainer's `state_dict()`) as its client state; the
    state's "rng" (this rank's, else taken now) goes to `rng_rank<rank>.pt`: client state is rank 0's only."""
    import torch
    import torch.distributed as dist

    client = dict(state)
    rng = client.pop("rng", None) or rng_state()
    tag = f"step{step:08d}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client)
    torch.save(rng, ckpt_dir / tag / f"rng_rank{rank}.pt")
    dist.barrier()


def load_checkpoint(engine: Any, ckpt_dir: Path, rank: int) -> Optional[dict[str, Any]]:
    """Resume `engine` from `ckpt_dir/latest`: the client state, with this rank's RNG state as "rng" (for
    the trainer's `load_state_dict`); None when there is nothing to resume. Weights-only loads:
    UnsafeFileError (a one-line input error) for a file that would construct other objects."""
    import torch

    if not (ckpt_dir / "latest").exists():
        return None
    reading = [str(ckpt_dir)]
    files = engine.checkpoint_engine
    original = files.load

    def load(path: str, map_location: Any = None) -> Any:  # DeepSpeed reads each file through this
        reading.append(str(path))
        return original(path, map_location=map_location)

    files.load = load
    try:
        with weights_only_loads(lambda: reading[-1]):
            path, client = engine.load_checkpoint(str(ckpt_dir))
    finally:
        files.load = original
    if path is None:
        return None
    tag = (ckpt_dir / "latest").read_text().strip()
    rng = ckpt_dir / tag / f"rng_rank{rank}.pt"
    client = dict(client or {})
    if rng.exists():
        with weights_only_loads(str(rng)):
            client["rng"] = torch.load(rng, weights_only=True)
    return client
