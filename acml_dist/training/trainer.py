"""The ACML trainer: GIN + projection heads against frozen teachers on a DeepSpeed engine.

    trainer = Trainer(cfg).build()    # process group, teachers, model, engine, loader, resume, MLflow run
    trainer.fit()                     # train_step per micro-batch; logs, held-out retrieval, checkpoints
    result = trainer.finish()         # final checkpoint + evaluation; rank 0: model, history, registry

One optimiser step = grad_accum micro-batches of trainer.micro_batch per rank; the loss sees negatives from
every rank. `state_dict()` / `load_state_dict()` carry the step, the data position (epoch, micro-batch in
the epoch), the bad steps and skipped shards, the loss history and this rank's RNG: a resumed run continues
the same batches and loss curve. Imports torch, PyG and DeepSpeed only (MLflow loads in `tracking` when a
run is tracked, RDKit / Ray never).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from acml_dist import tracking
from acml_dist.context import RunContext
from acml_dist.data.loader import make_loader
from acml_dist.data.shards import count_samples, count_taught
from acml_dist.errors import DataError
from acml_dist.log import get_logger
from acml_dist.losses import ContrastiveLoss
from acml_dist.models import ACMLModel
from acml_dist.models.io import init_from_saved, save_model
from acml_dist.training.checkpoint import BadStepGuard, load_checkpoint, save_checkpoint, set_rng_state
from acml_dist.training.checkpoint import rng_state as current_rng_state
from acml_dist.training.distributed import init_distributed, rank0_says, union_over_ranks
from acml_dist.training.ds_config import build_ds_config, initialize_engine
from acml_dist.training.metrics import (
    MetricWindow,
    batch_top1,
    held_out_split,
    plot_loss_curve,
    pooled_top1,
    present_projections,
    retrieval_summary,
    step_record,
    step_values,
    summary_table,
)
from acml_dist.training.online import fill_online, online_inputs, teacher_dims

log = get_logger("train")


def standardize_config(root: Path) -> Optional[dict[str, Any]]:
    """The shards' `data.standardize` (heavy-atom bounds ...): stored with the model, applied in serving."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    data = manifest.get("data") if isinstance(manifest, dict) else None
    return data.get("standardize") if isinstance(data, dict) else None


class Trainer:
    """One training run of a TrainJob config on this rank (see the module docstring)."""

    def __init__(self, cfg: Any, ctx: Optional[RunContext] = None) -> None:
        self.cfg, self.tr = cfg, cfg.trainer
        self.ctx = ctx or RunContext.from_config(cfg, output=cfg.output)
        self.root, self.out = self.ctx.dataset_dir, self.ctx.run_dir
        self.ckpt_dir = self.out / "checkpoints"
        self.step = self.epoch = self.micro = self.accum = 0
        self.history: list[dict[str, float]] = []
        self.resumed_step = 0
        self.window = MetricWindow()
        self.guard = BadStepGuard(int(self.tr.max_bad_steps))
        self.loader: Any = None
        self.skipped_before: list[str] = []  # shards skipped before a resume (from the checkpoint)
        self.train_time, self.t_start, self.last_ckpt = 0.0, time.time(), 0
        self._last: tuple[Any, Any] = ({}, {})  # outputs and masks of the last stepped micro-batch

    # ------------------------------------------------------------------------------------------ build
    def build(self) -> Trainer:
        """Join the process group, size the run, build model + engine, resume, start tracking, the loader."""
        tr = self.tr
        self.rank, self.world, _ = init_distributed(tr.backend)
        if self.rank == 0:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.dims, self.online = teacher_dims(self.cfg, self.root)
        if not self.dims:
            raise DataError("train: no teachers configured (teachers=smiles_fp, teachers=fingerprint, ...)")
        self.cache = [n for n in self.cfg.teachers if n not in self.online]
        self.weights = {n: float(self.cfg.teachers[n].weight) for n in self.dims}
        self._size_run()
        torch.manual_seed(tr.seed)  # same initial weights on every rank
        loss = self.cfg.loss
        model = ACMLModel(
            self.cfg.model, self.dims, loss.init_logit_scale, loss.max_logit_scale, loss.learnable_scale
        )
        if self.cfg.init_from:
            self._init_from(model)
        self.ds_config = build_ds_config(tr, self.total_steps, torch.cuda.is_available())
        self.engine, self.scheduler = initialize_engine(model, self.ds_config, float(tr.weight_decay))
        self.loss_fn = ContrastiveLoss(loss.kind, gather=loss.gather)
        self.dtype = next(self.engine.module.parameters()).dtype  # bf16 / fp16 / fp32: teacher inputs too
        if self.cfg.resume:
            self.resume()
        # dropout differs per rank, and continues on resume
        torch.manual_seed(tr.seed + 1 + self.rank + self.step)
        self._start_tracking()
        self.loader = make_loader(  # created once: its worker processes live across epochs
            self.root, "train", tr.micro_batch, schema=self.cfg.model.schema, teachers=self.cache,
            rank=self.rank, world_size=self.world, batches_per_epoch=self.per_epoch, shuffle=True,
            seed=tr.seed, epoch=self.epoch, num_workers=tr.num_workers, pin_memory=torch.cuda.is_available(),
            on_bad_shard=tr.on_bad_shard, text=("key", "smiles.txt") if self.online else ("key",),
            inputs=online_inputs(self.online), modality_batches=tr.modality_batches,
            isomer_batches=tr.isomer_batches, buffer_shards=tr.buffer_shards, taught_only=self.taught_only,
        )  # fmt: skip
        return self

    def _init_from(self, model: ACMLModel) -> None:
        """Continued pretraining: the weights of `init_from` (every rank loads the same file)."""
        tracking.use_store_for(self.cfg, str(self.cfg.init_from))
        source = tracking.resolve_model_dir(self.cfg.init_from)
        parts = init_from_saved(model, source)
        log.info("initialised from %s: GIN, heads of %s; fresh heads: %s",
                 source, parts["taken"] or "none", parts["fresh"] or "none")  # fmt: skip

    @property
    def taught_only(self) -> bool:
        """Rows no teacher can teach are not batched (data.loader); an online teacher covers every row."""
        return not self.online

    def _size_run(self) -> None:
        tr = self.tr
        rows = count_taught(self.root, "train", self.cache if self.taught_only else [])
        self.per_epoch = rows // (self.world * tr.micro_batch)
        if self.per_epoch < tr.grad_accum:
            raise DataError(
                f"{self.root}: too few training samples for {self.world} ranks x micro_batch {tr.micro_batch}"
            )
        steps_per_epoch = self.per_epoch // tr.grad_accum
        self.total_steps = int(tr.max_steps) if tr.max_steps else int(tr.epochs) * steps_per_epoch
        self.global_batch = self.world * tr.micro_batch * tr.grad_accum

    def _start_tracking(self) -> None:
        cfg, tr = self.cfg, self.tr
        self.logger = tracking.RunLogger(
            cfg, self.ctx, enabled=self.rank == 0 and cfg.tracking.enabled, run_name=f"train-{cfg.name}"
        )
        self.logger.start(
            params={
                "world_size": self.world,
                "global_batch": self.global_batch,
                "total_steps": self.total_steps,
                **self.dims,
            },
            texts={
                "config/train.yaml": _yaml(cfg),
                "config/deepspeed.json": json.dumps(self.ds_config, indent=2),
            },
            files=_manifests(self.root, self.cache),
        )
        log.info(
            "world %d, global batch %d (= %d ranks x %d x %d accumulation), %d steps, teachers %s",
            self.world, self.global_batch, self.world, tr.micro_batch, tr.grad_accum, self.total_steps,
            self.dims,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Step, data position, bad steps, skipped shards (all ranks': a collective), history, RNG."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "micro": self.micro,
            "bad_in_a_row": self.guard.in_a_row,
            "bad_total": self.guard.total,
            "skipped_shards": self.skipped_shards(),
            "history": self.history,
            "rng": current_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state.get("step", self.step))
        self.epoch = int(state.get("epoch", self.epoch))
        self.micro = int(state.get("micro", self.micro))
        self.guard.in_a_row = int(state.get("bad_in_a_row", self.guard.in_a_row))
        self.guard.total = int(state.get("bad_total", self.guard.total))
        self.skipped_before = list(state.get("skipped_shards", self.skipped_before))
        self.history = list(state.get("history", self.history))
        if state.get("rng") is not None:
            set_rng_state(state["rng"])

    def skipped_shards(self) -> list[str]:
        """Shards skipped (on_bad_shard=skip) by any rank or worker, before a resume too; collective."""
        if self.loader is None:
            return list(self.skipped_before)
        held = {*self.loader.skipped, *self.skipped_before}
        return union_over_ranks(held, self.loader.shard_names, self.world, self.engine.device)

    def resume(self) -> bool:
        """Load `<run>/checkpoints/latest` into the engine and this trainer; False when there is none."""
        client = load_checkpoint(self.engine, self.ckpt_dir, self.rank)
        if not client:
            return False
        self.load_state_dict(client)
        self.resumed_step = self.step
        log.info("resumed from %s at step %d (epoch %d, batch %d)",
                 self.ckpt_dir, self.step, self.epoch, self.micro)  # fmt: skip
        return True

    def save_checkpoint(self) -> None:
        save_checkpoint(self.engine, self.ckpt_dir, self.step, self.state_dict(), self.rank)
        self.last_ckpt = self.step
        log.info("checkpoint at step %d in %s", self.step, self.ckpt_dir)

    # ------------------------------------------------------------------------------------------ train
    def train_step(self, batch: Any) -> bool:
        """One micro-batch: forward, loss (mean over ranks), the NaN guard, backward, DeepSpeed step.
        True when it completed an optimiser step (every grad_accum micro-batches)."""
        batch = batch.to(self.engine.device, non_blocking=True)
        fill_online(batch, self.online)
        outputs = self.engine(batch.graph, {n: e.to(self.dtype) for n, e in batch.embeddings.items()})
        losses = {n: self.loss_fn(g, t, batch.masks.get(n), s) for n, (g, t, s) in outputs.items()}
        total = sum(self.weights[n] * v for n, v in losses.items())
        values = step_values(total, losses, batch.masks)  # + the share of the batch having each modality
        if self.world > 1:  # mean over ranks = the global-batch loss; NaN anywhere reaches every rank
            dist.all_reduce(values)
            values /= self.world
        if self.guard.check(bool(torch.isfinite(values).all()), self.step + 1):
            return False
        self.engine.backward(total)
        self.engine.step()
        self.accum += 1
        self.window.add(values, list(losses), len(batch) * self.world)
        self._last = (outputs, batch.masks)
        if self.accum < self.tr.grad_accum:
            return False
        self.accum = 0
        self.step += 1
        self.history.append(step_record(self.step, values, list(losses)))
        return True

    def fit(self) -> None:
        """Train to `total_steps` from where the state stands (the data position skips consumed batches)."""
        self.last_ckpt, self.t_start = self.step, time.time()
        while self.step < self.total_steps:
            self.loader.set_epoch(self.epoch)
            batches = iter(self.loader)
            for _ in range(self.micro):  # data position: skip what the checkpointed run consumed
                next(batches)
            tick = time.time()
            for batch in batches:
                self.micro += 1
                if not self.train_step(batch):
                    continue
                now = time.time()
                self.train_time += now - tick
                self.window.seconds += now - tick
                self._after_step()
                if self.step >= self.total_steps or self._out_of_time():
                    break
                tick = time.time()
            else:
                self.epoch += 1
                self.micro = 0
                continue
            break  # the step budget or trainer.max_minutes ended the run inside the epoch
        if self.step < self.total_steps:
            log.warning("trainer.max_minutes=%s reached at step %d of %d", self.tr.max_minutes, self.step,
                        self.total_steps)  # fmt: skip

    def _out_of_time(self) -> bool:
        """True once `trainer.max_minutes` is spent, by rank 0's clock on every rank."""
        over = bool(self.tr.max_minutes) and time.time() - self.t_start > 60 * float(self.tr.max_minutes)
        return bool(self.tr.max_minutes) and rank0_says(over, self.world, self.engine.device)

    def _after_step(self) -> None:
        tr, step = self.tr, self.step
        if step % tr.log_every == 0 or step == self.total_steps:
            self._log_window()
        if tr.eval_every and step % tr.eval_every == 0:
            self.logger.log_metrics(self.evaluate(), step)
        if tr.checkpoint_every and step % tr.checkpoint_every == 0 and step < self.total_steps:
            self.save_checkpoint()

    def _log_window(self) -> None:
        outputs, masks = self._last
        metrics = self.window.flush()
        metrics.update({f"train_top1_{n}": v for n, v in batch_top1(outputs, masks).items()})
        metrics.update({f"logit_scale_{n}": self.engine.module.logit_scale(n).item() for n in self.dims})
        grad_norm = self.engine.get_global_grad_norm()
        metrics["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        metrics["lr"] = float(self.scheduler.get_last_lr()[0])
        metrics["bad_steps"] = float(self.guard.total)
        self.logger.log_metrics(metrics, self.step)
        log.info(
            "step %d/%d loss %.4f %s %.0f mol/s", self.step, self.total_steps, metrics["loss"],
            " ".join(f"{k}={v:.3g}" for k, v in metrics.items() if k.startswith(("loss_", "train_top1"))),
            metrics["molecules_per_s"],
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ evaluate
    def evaluate(self) -> dict[str, float]:
        """Graph -> teacher top-1 on held-out (val, else test) molecules in pools of 128 that have the
        modality (`metrics.pooled_top1`: evaluate's rank), summed over ranks."""
        split = held_out_split(self.root)
        if split is None:
            return {}
        total = count_samples(self.root, split)
        size = min(128, total // self.world)
        if size < 2:
            return {}
        loader = make_loader(
            self.root, split, size, schema=self.cfg.model.schema, teachers=self.cache, rank=self.rank,
            world_size=self.world, batches_per_epoch=total // (self.world * size),
        )  # fmt: skip
        model = self.engine.module
        model.eval()
        proj: dict[str, list] = {n: [] for n in self.cfg.teachers}
        for mb in loader:
            mb = mb.to(self.engine.device)
            fill_online(mb, self.online)
            for name, pair in present_projections(model, mb, self.dtype).items():
                proj[name].append(pair)
        model.train()
        sums = {n: pooled_top1(proj[n]) for n in self.cfg.teachers}
        out = retrieval_summary(sums, list(self.cfg.teachers), self.world)
        out["retrieval_batch"] = float(size)
        return out

    # ------------------------------------------------------------------------------------------ finish
    def finish(self) -> dict[str, Any]:
        """Last checkpoint, held-out retrieval, and on rank 0 the saved model, history, loss curve, MLflow
        run, registration and `train_result.json` (its one writer). Returns the run's result."""
        if self.last_ckpt != self.step or not (self.ckpt_dir / "latest").exists():
            self.save_checkpoint()
        final = self.evaluate()
        last = self.history[-1] if self.history else {}
        trained = max(1, self.step - self.resumed_step)
        metrics = {
            **{k: v for k, v in last.items() if k != "step"},
            **final,
            "steps": self.step,
            "bad_steps": self.guard.total,  # non-finite losses skipped
            "skipped_shards": len(skipped := self.skipped_shards()),  # bad shards under on_bad_shard=skip
            "skipped_shard_names": skipped,
            "global_batch": self.global_batch,
            "world_size": self.world,
            "molecules_per_s": trained * self.global_batch / max(self.train_time, 1e-9),
            "wall_s": time.time() - self.t_start,
        }
        result: dict[str, Any] = {"metrics": metrics, "model_dir": None, "run_id": self.logger.run_id}
        result.update(metrics)
        if self.rank == 0:
            self._write_outputs(metrics, result)
        if self.world > 1:
            dist.barrier()
        return result

    def _write_outputs(self, metrics: dict[str, Any], result: dict[str, Any]) -> None:
        cfg, out = self.cfg, self.out
        teachers = {n: dict(cfg.teachers[n]) for n in self.dims}
        extra = {"metrics": metrics, "loss": cfg.loss.kind, "teachers": teachers}
        if cfg.init_from:
            extra["init_from"] = str(cfg.init_from)
        model_dir = save_model(
            self.engine.module, out / "model", extra, standardize=standardize_config(self.root)
        )
        result["model_dir"] = str(model_dir)
        curve = plot_loss_curve(self.history, out / "loss_curve.png")
        (out / "history.json").write_text(json.dumps(self.history))
        self.logger.finish(metrics, files=[curve, out / "history.json"], model_dir=model_dir)
        if self.tr.register and cfg.tracking.enabled and self.logger.offline:
            log.warning("not registered: MLflow is unreachable; the model is in %s", model_dir)
        elif self.tr.register and cfg.tracking.enabled:
            result["version"] = self._register(model_dir, metrics)
        (out / "train_result.json").write_text(json.dumps(result, indent=2, default=str))
        print(summary_table(metrics), file=sys.stderr)

    def _register(self, model_dir: Path, metrics: dict[str, Any]) -> int:
        """Register the saved model; the champion metric is evaluate's, computed on the saved model (as
        `acml evaluate` would), not the training-time held-out number."""
        from acml_dist.evaluate import champion_metrics  # evaluation code: RDKit, sklearn
        from acml_dist.models.io import load_model

        champion = champion_metrics(load_model(model_dir), self.root)
        if not champion:
            log.warning("no test molecules to rank: the registered version cannot take the champion alias")
        return tracking.register_model(
            model_dir, {**metrics, **champion}, self.cfg.tracking, self.ctx.tracking_uri
        )


def run(cfg: Any, ctx: Optional[RunContext] = None) -> dict[str, Any]:
    """Train on cfg.shards (or <shards_root>/<name>) into cfg.output (or <runs_root>/<name>); returns the
    flat metrics plus `metrics`, `model_dir` (rank 0), `run_id` and `version` when registered."""
    trainer = Trainer(cfg, ctx).build()
    trainer.fit()
    return trainer.finish()


def _manifests(root: Path, teachers: list[str]) -> list[Path]:
    paths = [root / "manifest.json"] + [root / "embeddings" / t / "manifest.json" for t in teachers]
    return [p for p in paths if p.exists()]


def _yaml(cfg: Any) -> str:
    from omegaconf import OmegaConf  # here: the training step must import on a GPU node without it

    return OmegaConf.to_yaml(cfg, resolve=True)
