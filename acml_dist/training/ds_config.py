"""The DeepSpeed config built from the Hydra `trainer` section, the optimiser's parameter groups and the
engine built from them."""

from __future__ import annotations

from typing import Any


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
