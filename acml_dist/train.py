"""ACML training on DeepSpeed: `run(cfg)` (Ray Train workers, tests, the CLI) and the `deepspeed` entry point.

    deepspeed --num_gpus N acml_dist/train.py <hydra overrides>      # --cfg job: print the config, exit
    python acml_dist/train.py <hydra overrides>                     # one process (world size 1)

torch.distributed is joined if already initialised (Ray Train), else initialised from the launcher's env
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), else as a world of one. One optimiser step = grad_accum
micro-batches of trainer.micro_batch per rank; the loss sees negatives from every rank.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from acml_dist.engine import (  # the distributed plumbing; tests and benchmarks import these from here too
    BadStepGuard,
    TooManyBadSteps,  # noqa: F401
    build_ds_config,
    init_distributed,
    initialize_engine,
    load_checkpoint,
    save_checkpoint,
)
from acml_dist.errors import DataError, InputError
from acml_dist.log import get_logger
from acml_dist.train_metrics import (
    MetricWindow,
    batch_top1,
    evaluate_retrieval,
    fill_online,
    param_dtype,
    plot_loss_curve,
    step_record,
    step_values,
)

log = get_logger("train")


def shards_root(cfg: Any) -> Path:
    return Path(cfg.shards) if cfg.shards else Path(cfg.shards_root) / cfg.name


def run_dir(cfg: Any) -> Path:
    return Path(cfg.output) if cfg.output else Path(cfg.runs_root) / cfg.name


def teacher_dims(cfg: Any, root: Path) -> tuple[dict[str, int], dict[str, Any]]:
    """Dims of every teacher (cache manifest, or the online teacher itself) and the loaded online teachers."""
    from acml_dist.data.shards import cache_manifest

    dims, online = {}, {}
    for name, tcfg in cfg.teachers.items():
        if tcfg.source == "online":
            from acml_dist.teachers import load_teacher

            online[name] = load_teacher(name, tcfg)
            dims[name] = int(online[name].dim)
        else:
            dims[name] = int(cache_manifest(root, name)["dim"])
    return dims, online


# ----------------------------------------------------------------------------------------------- run


def run(cfg: Any) -> dict[str, Any]:
    """Train the GIN + heads on cfg.shards (or <shards_root>/<name>); returns metrics, model_dir, run_id."""
    import torch
    import torch.distributed as dist

    from acml_dist import tracking
    from acml_dist.data.loader import count_samples, make_loader
    from acml_dist.losses import ContrastiveLoss
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model

    tr = cfg.trainer
    rank, world, _ = init_distributed(tr.backend)
    root, out = shards_root(cfg), run_dir(cfg)
    ckpt_dir = out / "checkpoints"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    dims, online = teacher_dims(cfg, root)
    if not dims:
        raise DataError("train: no teachers configured (teachers=smiles_fp, teachers=fingerprint, ...)")
    cache = [n for n in cfg.teachers if n not in online]
    weights = {n: float(cfg.teachers[n].weight) for n in dims}
    per_epoch = count_samples(root, "train") // (world * tr.micro_batch)
    if per_epoch < tr.grad_accum:
        raise DataError(f"{root}: too few training samples for {world} ranks x micro_batch {tr.micro_batch}")
    steps_per_epoch = per_epoch // tr.grad_accum
    total_steps = int(tr.max_steps) if tr.max_steps else int(tr.epochs) * steps_per_epoch
    global_batch = world * tr.micro_batch * tr.grad_accum

    torch.manual_seed(tr.seed)  # same initial weights on every rank
    model = ACMLModel(
        cfg.model, dims, cfg.loss.init_logit_scale, cfg.loss.max_logit_scale, cfg.loss.learnable_scale
    )
    ds_config = build_ds_config(tr, total_steps, torch.cuda.is_available())
    engine, scheduler = initialize_engine(model, ds_config, float(tr.weight_decay))
    loss_fn = ContrastiveLoss(cfg.loss.kind, gather=cfg.loss.gather)
    dtype = param_dtype(engine)

    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "micro": 0,
        "bad_in_a_row": 0,
        "bad_total": 0,
        "history": [],
    }
    client = load_checkpoint(engine, ckpt_dir, rank) if cfg.resume else None
    if client:
        state.update({k: client[k] for k in state if k in client})
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            ckpt_dir,
            state["step"],
            state["epoch"],
            state["micro"],
        )
    torch.manual_seed(tr.seed + 1 + rank + state["step"])  # dropout differs per rank, continues on resume
    guard = BadStepGuard(int(tr.max_bad_steps), state["bad_in_a_row"], state["bad_total"])
    history: list[dict[str, float]] = state["history"]

    logger = tracking.RunLogger(
        cfg, enabled=rank == 0 and cfg.tracking.enabled, run_name=f"train-{cfg.name}", offline_dir=out
    )
    logger.start(
        params={"world_size": world, "global_batch": global_batch, "total_steps": total_steps, **dims},
        texts={"config/train.yaml": _yaml(cfg), "config/deepspeed.json": json.dumps(ds_config, indent=2)},
        files=_manifests(root, cache),
    )
    log.info(
        "world %d, global batch %d (= %d ranks x %d x %d accumulation), %d steps, teachers %s",
        world,
        global_batch,
        world,
        tr.micro_batch,
        tr.grad_accum,
        total_steps,
        dims,
    )

    step, accum, window = state["step"], 0, MetricWindow()
    last_ckpt = step
    t_start = time.time()
    train_time = 0.0
    loader = make_loader(  # created once: its worker processes live across epochs
        root,
        "train",
        tr.micro_batch,
        schema=cfg.model.schema,
        teachers=cache,
        rank=rank,
        world_size=world,
        batches_per_epoch=per_epoch,
        shuffle=True,
        seed=tr.seed,
        epoch=state["epoch"],
        num_workers=tr.num_workers,
        pin_memory=torch.cuda.is_available(),
        on_bad_shard=tr.on_bad_shard,
        text=("key", "smiles.txt") if online else ("key",),
    )
    while step < total_steps:
        loader.set_epoch(state["epoch"])
        batches = iter(loader)
        for _ in range(state["micro"]):  # data position: skip what the checkpointed run consumed
            next(batches)
        tick = time.time()
        for batch in batches:
            state["micro"] += 1
            fill_online(batch, online)
            batch = batch.to(engine.device, non_blocking=True)
            outputs = engine(batch.graph, {n: e.to(dtype) for n, e in batch.embeddings.items()})
            losses = {n: loss_fn(g, t, batch.masks.get(n), s) for n, (g, t, s) in outputs.items()}
            total = sum(weights[n] * v for n, v in losses.items())
            values = step_values(total, losses, batch.masks)  # + per-teacher presence
            if world > 1:  # mean over ranks = the global-batch loss; NaN anywhere reaches every rank
                dist.all_reduce(values)
                values /= world
            if guard.check(bool(torch.isfinite(values).all()), step + 1):
                continue
            engine.backward(total)
            engine.step()
            accum += 1
            window.add(values, list(losses), len(batch) * world)
            if accum < tr.grad_accum:
                continue
            accum = 0
            step += 1
            now = time.time()
            train_time += now - tick
            window.seconds += now - tick
            history.append(step_record(step, values, list(losses)))
            if step % tr.log_every == 0 or step == total_steps:
                metrics = window.flush()
                metrics.update({f"train_top1_{n}": v for n, v in batch_top1(outputs, batch.masks).items()})
                metrics.update({f"logit_scale_{n}": engine.module.logit_scale(n).item() for n in dims})
                grad_norm = engine.get_global_grad_norm()
                metrics["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
                metrics["lr"] = float(scheduler.get_last_lr()[0])
                metrics["bad_steps"] = float(guard.total)
                logger.log_metrics(metrics, step)
                log.info(
                    "step %d/%d loss %.4f %s %.0f mol/s",
                    step,
                    total_steps,
                    metrics["loss"],
                    " ".join(
                        f"{k}={v:.3g}" for k, v in metrics.items() if k.startswith(("loss_", "train_top1"))
                    ),
                    metrics["molecules_per_s"],
                )
            if tr.eval_every and step % tr.eval_every == 0:
                logger.log_metrics(evaluate_retrieval(engine, cfg, root, online, rank, world), step)
            if tr.checkpoint_every and step % tr.checkpoint_every == 0 and step < total_steps:
                _checkpoint(engine, ckpt_dir, step, state, guard, history, rank)
                last_ckpt = step
            if step >= total_steps:
                break
            tick = time.time()
        else:
            state["epoch"] += 1
            state["micro"] = 0
    if last_ckpt != step or not (ckpt_dir / "latest").exists():
        _checkpoint(engine, ckpt_dir, step, state, guard, history, rank)

    final = evaluate_retrieval(engine, cfg, root, online, rank, world)
    last = history[-1] if history else {}
    trained = max(1, step - (client or {}).get("step", 0))
    metrics = {
        **{k: v for k, v in last.items() if k != "step"},
        **final,
        "steps": step,
        "bad_steps": guard.total,
        "global_batch": global_batch,
        "world_size": world,
        "molecules_per_s": trained * global_batch / max(train_time, 1e-9),
        "wall_s": time.time() - t_start,
    }
    result: dict[str, Any] = {"metrics": metrics, "model_dir": None, "run_id": logger.run_id, **metrics}
    if rank == 0:
        model_dir = save_model(
            engine.module,
            out / "model",
            {"metrics": metrics, "loss": cfg.loss.kind, "teachers": {n: dict(cfg.teachers[n]) for n in dims}},
            standardize=_standardize_config(root),
        )
        result["model_dir"] = str(model_dir)
        curve = plot_loss_curve(history, out / "loss_curve.png")
        (out / "history.json").write_text(json.dumps(history))
        logger.finish(metrics, files=[curve, out / "history.json"], model_dir=model_dir)
        if tr.register and cfg.tracking.enabled and logger.offline:
            log.warning("not registered: MLflow is unreachable; the model is in %s", model_dir)
        elif tr.register and cfg.tracking.enabled:
            result["version"] = tracking.register_model(model_dir, metrics, cfg.tracking)
        print(_summary_table(metrics), file=sys.stderr)
    if world > 1:
        dist.barrier()
    return result


def _checkpoint(engine, ckpt_dir, step, state, guard, history, rank) -> None:
    client = {
        **state,
        "step": step,
        "bad_in_a_row": guard.in_a_row,
        "bad_total": guard.total,
        "history": history,
    }
    save_checkpoint(engine, ckpt_dir, step, client, rank)
    log.info("checkpoint at step %d in %s", step, ckpt_dir)


def _standardize_config(root: Path) -> Optional[dict[str, Any]]:
    """The shards' `data.standardize` (heavy-atom bounds ...): stored with the model, applied in serving."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    data = manifest.get("data") if isinstance(manifest, dict) else None
    return data.get("standardize") if isinstance(data, dict) else None


def _yaml(cfg: Any) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=True)


def _manifests(root: Path, teachers: list[str]) -> list[Path]:
    paths = [root / "manifest.json"] + [root / "embeddings" / t / "manifest.json" for t in teachers]
    return [p for p in paths if p.exists()]


def _summary_table(metrics: dict[str, Any]) -> str:
    width = max(len(k) for k in metrics)
    lines = ["", f"{'metric':<{width}}  value", "-" * (width + 14)]
    lines += [
        f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in metrics.items()
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """`deepspeed acml_dist/train.py <overrides>`: strips the launcher's --local_rank, `--cfg job` prints.
    A wrong config or input gives one line per rank and exit 2, as the CLI does (ACML_DEBUG=1: traceback)."""
    try:
        return _main(argv)
    except (InputError, FileNotFoundError) as exc:
        if os.environ.get("ACML_DEBUG"):
            raise
        # one write per line: the launcher merges every rank's stderr
        sys.stderr.write(f"[rank {os.environ.get('RANK', 0)}] acml train: {exc}\n")
        return 2


def _main(argv: Optional[list[str]]) -> int:
    from acml_dist.config import load_config, to_yaml

    args = list(sys.argv[1:] if argv is None else argv)
    overrides, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(("--local_rank", "--local-rank")):
            i += 1 if "=" in arg else 2
            continue
        overrides.append(arg)
        i += 1
    show = "--cfg" in overrides
    if show:
        at = overrides.index("--cfg")
        del overrides[at : at + 2]
    config_file = None
    if "--config-file" in overrides:  # a resolved train config written by the pipeline's deepspeed launch
        at = overrides.index("--config-file")
        config_file = overrides[at + 1]
        del overrides[at : at + 2]
    if config_file:
        from omegaconf import OmegaConf

        from acml_dist.config import validate

        raw = OmegaConf.merge(OmegaConf.load(config_file), OmegaConf.from_dotlist(overrides))
        cfg = validate("train", raw)
    else:
        cfg = load_config("train", overrides)
    if show:
        print(to_yaml(cfg))
        return 0
    result = run(cfg)
    if result.get("model_dir"):  # rank 0
        summary = json.dumps({k: v for k, v in result.items() if k != "metrics"}, default=str)
        print(summary)
        (run_dir(cfg) / "train_result.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    # As a script, this folder is sys.path[0]: its module names (data, config, ...) must not shadow others.
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    code = main()
    # A finished rank leaves at once: in interpreter teardown gloo's background threads can die with
    # "terminate called without an active exception" (SIGABRT) after all work is done, which the
    # launcher would report as a failed rank. Everything is written and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
