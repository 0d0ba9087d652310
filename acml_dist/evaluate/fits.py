"""Running fine-tuning fits: one (seed, method) fit with its progress and log line (`fit_one`), and a
dataset's independent fits side by side in worker processes (`run_fits`), each worker with `eval.num_threads`
torch threads. Fits reseed torch themselves, so a fit gives the same result in a worker as in this process.

Why processes: one fit of a small-molecule GIN is a chain of small matrix products that more threads barely
speed up (docs: `eval.num_threads`), while the seeds and methods of a benchmark are independent."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import pickle
import queue as queue_lib
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acml_dist.evaluate.finetuning import FitResult, LabelledSet, fit_predictor, main_metric
from acml_dist.log import get_logger

log = get_logger("evaluate")


@dataclass
class FitJob:
    label: str  # names the fit in progress and log lines
    encoder: Any  # a module mapping a PyG Batch to embeddings (properties.EncoderView)
    data: LabelledSet
    split: tuple[np.ndarray, np.ndarray, np.ndarray]
    seed: int
    pretrained: bool  # trains at eval.pretrained_lr x the rate, after eval.pretrained_frozen_epochs
    keep: bool = False  # save the fitted predictor (`predictors.save_predictor`) beside the stored scores


def encoder_width(encoder: Any, graphs: list) -> int:
    import torch
    from torch_geometric.data import Batch

    encoder.eval()
    with torch.no_grad():
        return int(encoder(Batch.from_data_list(graphs[:2])).shape[1])


def recipe_kwargs(ecfg: Any) -> dict:
    """fit_predictor's budget and schedule from the `eval` config."""
    return {
        "epochs": int(ecfg.finetune_epochs),
        "patience": int(ecfg.patience),
        "batch_size": int(ecfg.batch_size),
        "lr": float(ecfg.lr),
        "weight_decay": float(ecfg.weight_decay),
        "warmup": float(ecfg.warmup),
        "schedule": str(ecfg.schedule),
        "final_lr": float(ecfg.final_lr),
        "ema": float(ecfg.ema),
    }


def fit_one(
    job: FitJob,
    ecfg: Any,
    features: np.ndarray | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    save_to: Path | None = None,
) -> FitResult:
    """One fine-tuning run (the `eval.*` recipe) and a log line when it ends; with `save_to`, the fitted
    predictor saved there (`FitResult.predictor_dir`). Progress: `on_epoch(record)` after each epoch when
    given, else a per-epoch bar on stderr (`eval.progress`)."""
    from tqdm.auto import tqdm

    metric, _ = main_metric(job.data.task)
    started = time.monotonic()
    show = ecfg.progress and on_epoch is None
    with tqdm(total=int(ecfg.finetune_epochs), desc=job.label, unit="epoch", disable=not show) as bar:

        def report(_epoch: int, _model: Any, record: dict) -> None:
            if on_epoch is not None:
                on_epoch(record)
            bar.update(1)
            bar.set_postfix({f"val_{metric}": f"{record[f'val_{metric}']:.3f}"}, refresh=False)

        own = {"encoder_lr": float(ecfg.pretrained_lr), "frozen_epochs": int(ecfg.pretrained_frozen_epochs)}
        fit = fit_predictor(
            job.encoder, encoder_width(job.encoder, job.data.graphs), job.data, job.split, seed=job.seed,
            on_epoch=report, features=features, **recipe_kwargs(ecfg), **(own if job.pretrained else {}),
        )  # fmt: skip
    if save_to is not None:
        from acml_dist.evaluate.predictors import save_predictor

        save_predictor(save_to, fit, job, str(ecfg.chirality), str(ecfg.mol_features or ""))
        fit.predictor_dir = save_to
    log.info(
        "%s: best epoch %d of %d, val %s %.3f, test %s %.3f (%.0f s)",
        job.label, fit.best_epoch, len(fit.curve), metric, fit.val.get(metric, np.nan), metric,
        fit.test.get(metric, np.nan), time.monotonic() - started,
    )  # fmt: skip
    return fit


def fit_workers(requested: int, fits: int, threads: int) -> int:
    """Worker processes for `fits` fits: `requested`, or (0) as many as the usable cores hold at `threads`
    threads each; never more than the fits. 1: the fits run in this process."""
    if requested < 0:
        raise ValueError(f"eval.workers must be >= 0 (0: one per free core), got {requested}")
    if not requested:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        requested = cores // max(threads, 1)
    return max(1, min(requested, fits))


_progress: Any = None  # the worker's queue to the parent's progress bar


def _start_worker(progress: Any, threads: int, parent: int) -> None:
    import torch

    global _progress
    _progress = progress
    if threads:
        torch.set_num_threads(threads)
    exit_with_parent(parent)


def exit_with_parent(parent: int, period_s: float = 1.0) -> None:
    """Ends this worker process within `period_s` of its parent's death. A pool worker otherwise outlives a
    parent stopped by SIGTERM or SIGKILL (a scheduler's stop, `kill`) until its fit ends: up to tens of
    minutes of CPU spent on a result nobody collects. (Ctrl-C reaches the whole process group already.)
    `parent` is the pool owner's pid, passed in: by the time a spawned worker runs this, it may be gone."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _fit_in_worker(payload: bytes) -> FitResult:
    job, ecfg, features, save_to = pickle.loads(payload)
    fit = fit_one(job, ecfg, features, on_epoch=lambda _record: _progress.put(1), save_to=save_to)
    _progress.put(int(ecfg.finetune_epochs) - len(fit.curve))  # epochs early stopping skipped
    return dataclasses.replace(fit, model=None)  # the weights stay in the worker: callers read the scores


_STORE_VERSION = 1  # of a stored fit's fields; bump when they change


def fit_key(job: FitJob, ecfg: Any, features: np.ndarray | None) -> str:
    """A digest of everything a fit's result depends on: the recipe, seed, split, labels, the molecules'
    input tensors, the encoder's starting weights and the extra features. Fits are deterministic (up to
    float rounding across thread counts), so a result stored under its key can stand in for refitting."""
    import hashlib
    import json

    digest = hashlib.sha256()
    recipe = {**recipe_kwargs(ecfg), "pretrained_lr": float(ecfg.pretrained_lr),
              "pretrained_frozen_epochs": int(ecfg.pretrained_frozen_epochs)}  # fmt: skip
    head = {"v": _STORE_VERSION, "label": job.label, "seed": job.seed, "pretrained": job.pretrained, **recipe}
    digest.update(json.dumps(head, sort_keys=True).encode())
    digest.update("\n".join(job.data.smiles).encode())
    for array in (job.data.y, *job.split, features if features is not None else np.zeros(0)):
        digest.update(np.ascontiguousarray(array).tobytes())
    for graph in job.data.graphs:
        for name in ("x", "edge_index", "edge_attr"):
            value = getattr(graph, name, None)
            if value is not None:
                digest.update(value.numpy().tobytes())
    for name, tensor in job.encoder.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


def _load_fit(path) -> FitResult | None:
    import json

    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or unreadable: refit
    return FitResult(stored["test"], stored["val"], stored["best_epoch"], stored["curve"],
                     test_pred=np.asarray(stored["test_pred"], dtype=np.float64))  # fmt: skip


def _store_fit(path, fit: FitResult) -> None:
    import json

    pred = [] if fit.test_pred is None else np.asarray(fit.test_pred).tolist()
    record = {"test": fit.test, "val": fit.val, "best_epoch": fit.best_epoch, "curve": fit.curve,
              "test_pred": pred}  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)  # a crash leaves the old file or none, never half of one


def run_fits(jobs: list[FitJob], ecfg: Any, features: np.ndarray | None = None,
             store: Path | None = None) -> list[FitResult]:  # fmt: skip
    """Every job's FitResult, in job order. With more than one worker (`fit_workers` of `eval.workers`) the
    fits run in spawned processes under one progress bar over all their epochs, and come back without
    their weights (`FitResult.model` None). With a `store` folder each finished fit's scores are kept there
    under its `fit_key`, and a fit already there is read back (without weights too), not rerun: an
    evaluation killed after an hour resumes where it stopped. A `keep` job's predictor is saved in the store
    under the same key (a folder), by whichever process fits it (`FitResult.predictor_dir`, also when read
    back)."""
    paths: list[Path | None] = [None] * len(jobs)
    save_dirs: list[Path | None] = [None] * len(jobs)  # without a store, nowhere to keep a predictor
    done: dict[int, FitResult] = {}
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
        paths = [store / f"{fit_key(job, ecfg, features)}.json" for job in jobs]
        save_dirs = [path.with_suffix("") if job.keep else None for job, path in zip(jobs, paths)]
        for i, path in enumerate(paths):
            if (fit := _load_fit(path)) is not None:
                done[i] = dataclasses.replace(fit, predictor_dir=save_dirs[i])
        if done:
            log.info("%s: %d of %d fits read from %s (finished earlier)", jobs[0].data.name, len(done),
                     len(jobs), store)  # fmt: skip
    todo = [i for i in range(len(jobs)) if i not in done]

    def finished(i: int, fit: FitResult) -> None:
        done[i] = fit
        if paths[i] is not None:
            _store_fit(paths[i], fit)

    _run([(jobs[i], save_dirs[i]) for i in todo], ecfg, features, lambda k, fit: finished(todo[k], fit))
    return [done[i] for i in range(len(jobs))]


def _run(jobs: list[tuple[FitJob, Path | None]], ecfg: Any, features: np.ndarray | None,
         finished: Callable[[int, FitResult], None]) -> None:  # fmt: skip
    """Runs the (job, where to save its predictor) pairs; `finished(index, result)` as each one ends."""
    if not jobs:
        return
    workers = fit_workers(int(ecfg.workers), len(jobs), int(ecfg.num_threads))
    if workers == 1:
        for k, (job, save_to) in enumerate(jobs):
            finished(k, fit_one(job, ecfg, features, save_to=save_to))
        return
    from tqdm.auto import tqdm

    ctx = mp.get_context("spawn")  # fork would copy torch's thread pools mid-use
    progress = ctx.Queue()
    total = len(jobs) * int(ecfg.finetune_epochs)
    label = f"{jobs[0][0].data.name}: {len(jobs)} fits on {workers} processes"
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                               initargs=(progress, int(ecfg.num_threads), os.getpid()))  # fmt: skip
    with pool, tqdm(total=total, desc=label, unit="epoch", disable=not ecfg.progress) as bar:
        # Plain pickle bytes: multiprocessing's own pickler would pass each of the graphs' tensors as a
        # shared-memory file descriptor, and a few thousand molecules exceed the open-file limit.
        futures = [pool.submit(_fit_in_worker, pickle.dumps((job, ecfg, features, to))) for job, to in jobs]
        pending = set(futures)
        while pending:
            ended, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in ended:
                finished(futures.index(future), future.result())
            while True:
                try:
                    bar.update(progress.get_nowait())
                except queue_lib.Empty:
                    break
