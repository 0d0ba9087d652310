"""The distributed plumbing of `acml_dist/train.py`: joining torch.distributed through DeepSpeed, the
DeepSpeed config built from the Hydra `trainer` section, the NaN/Inf guard, and checkpoints with per-rank RNG.
"""

from __future__ import annotations

import os
import re
import socket
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


# ----------------------------------------------------------------------------------------------- set-up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(backend: str = "auto") -> tuple[int, int, int]:
    """Join or start torch.distributed through DeepSpeed; returns (rank, world_size, local_rank)."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import torch.distributed as dist

    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    # DeepSpeed's CPU shared-memory allreduce is a C++ op JIT-compiled on first use (~100 s); gloo does it.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size(), local_rank


def build_ds_config(trainer: Any, total_steps: int, on_gpu: bool) -> dict[str, Any]:
    """The DeepSpeed config from the Hydra `trainer` section."""
    precision = trainer.precision if trainer.precision != "auto" else ("bf16" if on_gpu else "fp32")
    warmup = min(int(trainer.warmup_steps), total_steps - 1)
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(trainer.micro_batch),
        "gradient_accumulation_steps": int(trainer.grad_accum),
        "gradient_clipping": float(trainer.grad_clip),
        "steps_per_print": 10**9,  # we log ourselves
        "optimizer": {
            "type": "AdamW",
            # torch_adam: no CPU-Adam / fused-Adam C++ build
            "params": {
                "lr": float(trainer.lr),
                "weight_decay": float(trainer.weight_decay),
                "torch_adam": True,
                # one multi-tensor update instead of a Python loop over ~80 parameter tensors (torch picks
                # this itself only on CUDA)
                "foreach": True,
            },
        },
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": max(2, total_steps),
                # DeepSpeed wants >= 1 warm-up step: "no warm-up" is one step that starts at the full rate
                "warmup_num_steps": max(1, warmup),
                "warmup_min_ratio": 0.0 if warmup >= 1 else 1.0,
                "warmup_type": "linear",
            },
        },
        "zero_optimization": {"stage": int(trainer.zero_stage)},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "wall_clock_breakdown": False,
    }
    extra = dict(trainer.extra_ds_config or {})
    return _deep_merge(config, extra)


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """No decay on biases, norms and scalars such as the logit scales (as CLIP / open_clip)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def initialize_engine(model: Any, ds_config: dict[str, Any], weight_decay: float) -> tuple[Any, Any]:
    """DeepSpeed engine and LR scheduler for `model` (ds_config from `build_ds_config`)."""
    import deepspeed

    engine, _, _, scheduler = deepspeed.initialize(
        model=model, model_parameters=param_groups(model, weight_decay), config=ds_config
    )
    if engine.dp_world_size == 1 and engine.zero_optimization_stage() == 0:
        # One data-parallel rank without ZeRO: the gradient all-reduce would only copy every gradient through
        # a flat bucket and back (~4% of a CPU step at width 64). Not with ZeRO >= 1: its reduce step is what
        # fills the optimizer's partitioned gradients (skipped, the first step fails with KeyError: 0).
        engine.enable_backward_allreduce = False
    return engine, scheduler


def _deep_merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


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


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
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


def save_checkpoint(engine: Any, ckpt_dir: Path, step: int, client: dict[str, Any], rank: int) -> None:
    import torch
    import torch.distributed as dist

    tag = f"step{step:08d}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client)
    # RNG is per rank; DeepSpeed's client state is rank 0's only.
    torch.save(_rng_state(), ckpt_dir / tag / f"rng_rank{rank}.pt")
    dist.barrier()


def load_checkpoint(engine: Any, ckpt_dir: Path, rank: int) -> Optional[dict[str, Any]]:
    """Resume `engine` from `ckpt_dir/latest`; None when there is nothing to resume. Weights-only loads:
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
    if rng.exists():
        with weights_only_loads(str(rng)):
            state = torch.load(rng, weights_only=True)
        _set_rng_state(state)
    return client
