"""Downstream fine-tuning for property prediction (pretraining is `acml_dist.train`): fine-tune the pretrained
GIN with an MLP head, linear probes on frozen embeddings, and the same GIN trained from scratch as the
baseline, all on the same splits, seeds and budget. (`finetune_job.py` is the `acml finetune` job around it.)

Labels are an (n, tasks) float array with NaN for missing labels; losses and metrics mask them per task.
Metrics come from scikit-learn and are averaged over tasks that can be scored."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from acml_dist.config.eval import SCHEDULES
from acml_dist.evaluate.mol_features import FeatureScaler
from acml_dist.log import get_logger

log = get_logger("evaluate")


class EncoderView(nn.Module):
    """`model.encode` as a module, so optimisers, deepcopy and train/eval modes see the whole model."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, graph):
        return self.model.encode(graph)


@dataclass
class LabelledSet:
    """A featurised labelled dataset; `invalid` lists rows whose SMILES failed (row, input, reason)."""

    name: str
    task: str  # regression | classification
    targets: list[str]
    smiles: list[str]
    graphs: list[Any]  # torch_geometric Data, aligned with smiles and y
    y: np.ndarray  # (n, tasks) float, NaN = missing
    rows: int = 0
    invalid: list[dict] = field(default_factory=list)
    arrays: list[dict] = field(default_factory=list, repr=False)  # per molecule, schema-free (mol_to_graph)
    source_rows: list[int] = field(default_factory=list)  # each molecule's row in the input table (from 0)
    parts: list | None = None  # each molecule's split-column value (data.split=column), else None

    def in_schema(self, schema: str) -> LabelledSet:
        """The same molecules, labels and order as graphs of another atom/bond schema."""
        from acml_dist.data.loader import graph_from_npz

        if len(self.arrays) != len(self.graphs):
            raise ValueError(f"{self.name}: no per-molecule arrays kept, cannot change the schema")
        return dataclasses.replace(self, graphs=[graph_from_npz(a, schema) for a in self.arrays])

    @property
    def missing_labels(self) -> int:
        return int(np.isnan(self.y).sum())


def task_metrics(y_true: np.ndarray, y_pred: np.ndarray, task: str) -> dict[str, float]:
    """Masked per-task sklearn metrics averaged over tasks: rmse/mae (regression), roc_auc/pr_auc."""
    from sklearn.metrics import (
        average_precision_score,
        mean_absolute_error,
        mean_squared_error,
        roc_auc_score,
    )

    y_true, y_pred = np.atleast_2d(y_true.T).T, np.atleast_2d(y_pred.T).T
    scores: dict[str, list[float]] = {}
    for t in range(y_true.shape[1]):
        keep = ~np.isnan(y_true[:, t])
        yt, yp = y_true[keep, t], y_pred[keep, t]
        if task == "regression":
            if len(yt) == 0:
                continue
            scores.setdefault("rmse", []).append(float(np.sqrt(mean_squared_error(yt, yp))))
            scores.setdefault("mae", []).append(float(mean_absolute_error(yt, yp)))
        else:
            if len(np.unique(yt)) < 2:
                continue  # AUC undefined for a task with one class in this split
            scores.setdefault("roc_auc", []).append(float(roc_auc_score(yt, yp)))
            scores.setdefault("pr_auc", []).append(float(average_precision_score(yt, yp)))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def main_metric(task: str) -> tuple[str, bool]:
    """(metric name, higher is better) used for early stopping and summaries."""
    return ("rmse", False) if task == "regression" else ("roc_auc", True)


def _mlp_head(in_dim: int, tasks: int, dropout: float):
    from torch import nn

    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(in_dim, tasks))


def build_predictor(encoder, emb_dim: int, tasks: int, dropout: float = 0.2, n_features: int = 0):
    """Encoder (a module mapping a PyG Batch to (B, emb_dim)) followed by the MLP head; with `n_features`,
    the head reads the embedding concatenated with the batch's `mol_features` (B, n_features)."""
    import torch
    from torch import nn

    class WithFeatures(nn.Sequential):  # [0] the encoder, [1] the head, as the plain predictor
        def forward(self, batch):
            return self[1](torch.cat([self[0](batch), batch.mol_features], dim=1))

    head = _mlp_head(emb_dim + n_features, tasks, dropout)
    return WithFeatures(encoder, head) if n_features else nn.Sequential(encoder, head)


def _attach_labels(graphs: list, y: np.ndarray, features: np.ndarray | None = None) -> list:
    import torch

    out = []
    for i, (g, row) in enumerate(zip(graphs, y)):
        g = copy.copy(g)
        g.y = torch.as_tensor(row, dtype=torch.float32).view(1, -1)
        if features is not None:
            g.mol_features = torch.from_numpy(features[i]).view(1, -1)
        out.append(g)
    return out


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine", final: float = 0.0):
    """Multiplier of the base lr at optimizer step `step` (0-based): linear warm-up from 1/warmup to 1 over
    `warmup_steps`, then cosine or linear decay to `final` at `total_steps` (constant: stays 1)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return final + (1.0 - final) * decay


@dataclass
class FitResult:
    test: dict[str, float]
    val: dict[str, float]
    best_epoch: int
    curve: list[dict]  # per epoch: epoch, train_loss, val_<metric>, lr
    model: Any = None  # the predictor with the best epoch's weights restored
    test_pred: Any = None  # (n_test, tasks) predictions of that predictor, in label units (probabilities)
    feature_scaler: Any = None  # the mol_features' FeatureScaler fitted on the training rows, if any
    predictor_dir: Any = None  # where the fitted predictor was saved (evaluate.predictors), if it was


def target_scaling(data: LabelledSet, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of regression targets on the training split (0, 1 for classification), NaN-safe."""
    if data.task != "regression":
        return np.zeros(data.y.shape[1]), np.ones(data.y.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a task with no training label: mean 0, std 1
        mean, std = np.nanmean(data.y[train], axis=0), np.nanstd(data.y[train], axis=0)
    return np.nan_to_num(mean), np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)


def _batch_loss(model, batch, task: str):
    import torch

    pred, target = model(batch), batch.y
    mask = ~torch.isnan(target)
    target = torch.nan_to_num(target)
    if task == "regression":
        loss_el = (pred - target) ** 2
    else:
        loss_el = torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none")
    return (loss_el * mask).sum() / mask.sum().clamp(min=1)


def _train_epoch(model, loader, opt, sched, task: str, frozen: bool, averaged=None) -> float:
    """One pass over the training batches; the mean loss. A `frozen` encoder (model[0]) takes no gradient,
    no step and no BatchNorm update (AdamW skips parameters without a gradient). `averaged` (torch's
    AveragedModel) takes the weights after each step."""
    model.train()
    model[0].train(not frozen)
    for p in model[0].parameters():
        p.requires_grad_(not frozen)
    total, count = 0.0, 0
    for batch in loader:
        if batch.num_graphs >= 2:  # BatchNorm needs two graphs' worth of statistics to be meaningful
            loss = _batch_loss(model, batch, task)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total, count = total + float(loss.detach()) * batch.num_graphs, count + batch.num_graphs
        sched.step()  # per batch, skipped or not, so the schedule spans exactly the epochs
    return total / max(count, 1)


def ema_decay(decay: float, total_steps: int) -> float:
    """The decay per step actually used: `decay`, lowered so that the average's horizon (1 / (1 - decay)
    steps) spans at most a tenth of the run; a run too short for that averages nothing (0). The figures in
    docs/finetune_recipe.md had runs of >= 1,700 steps, where 0.99 is not lowered."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema must be 0 (off) or in (0, 1), got {decay}")
    return min(decay, max(0.0, 1.0 - 10.0 / max(total_steps, 1)))


def _moving_average(model, decay: float):
    """torch's exponential moving average of `model` (parameters and buffers), or None for `decay` 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


# ~85 lines: the whole recipe (schedule, weight averaging, best-validation restore, patience, progress) read
# top to bottom.
def fit_predictor(
    encoder,
    emb_dim: int,
    data: LabelledSet,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    seed: int,
    epochs: int,
    patience: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    warmup: float = 0.0,
    schedule: str = "constant",
    final_lr: float = 0.0,
    encoder_lr: float = 1.0,
    frozen_epochs: int = 0,
    ema: float = 0.0,
    features: np.ndarray | None = None,
    on_epoch: Callable[[int, Any, dict], None] | None = None,
) -> FitResult:
    """Train encoder + MLP head end to end (AdamW; lr warm-up over the first `warmup` fraction of steps,
    then `schedule` decay to `final_lr` x lr, stepped per batch; the encoder at `encoder_lr` x the head's
    rate throughout, and frozen, BatchNorm statistics included, for the first `frozen_epochs`: the head
    first learns on the encoder's features as they are, as in LP-FT), early stopping on the validation metric
    after `patience` epochs without improvement; the best validation epoch's weights are restored and
    tested. `features` (n, F) raw molecule features aligned with `data` (chem.descriptors): normalised on
    the training rows (`mol_features.FeatureScaler`) and read by the head beside the embedding.
    `on_epoch(epoch, model, record)` is called after each epoch's validation."""
    import torch
    from torch_geometric.loader import DataLoader

    torch.manual_seed(seed)
    train, val, test = split
    task = data.task
    metric, higher = main_metric(task)
    mean, std = target_scaling(data, train)  # one lr suits every dataset on standardised targets
    scaler = None if features is None else FeatureScaler.fit(features, train)
    feats = None if scaler is None else scaler.transform(features)
    graphs = _attach_labels(data.graphs, (data.y - mean) / std, feats)
    model = build_predictor(
        encoder, emb_dim, data.y.shape[1], n_features=0 if feats is None else feats.shape[1]
    )
    encoder_module, head = model
    groups = [{"params": head.parameters(), "lr": lr},
              {"params": encoder_module.parameters(), "lr": lr * encoder_lr}]  # fmt: skip
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader([graphs[i] for i in train], batch_size=batch_size, shuffle=True, generator=gen)
    total_steps = epochs * len(train_loader)
    warmup_steps = int(round(warmup * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, total_steps, warmup_steps, schedule, final_lr)
    )
    averaged = _moving_average(model, ema_decay(ema, total_steps))
    scored = model if averaged is None else averaged.module  # the weights validation and test read

    def predict(idx: np.ndarray) -> np.ndarray:
        scored.eval()
        out = []
        with torch.no_grad():
            for batch in DataLoader([graphs[i] for i in idx], batch_size=256):
                out.append(scored(batch).numpy())
        pred = np.concatenate(out) if out else np.zeros((0, data.y.shape[1]))
        return pred * std + mean if task == "regression" else 1 / (1 + np.exp(-pred))

    best, best_state, best_epoch, bad, curve = None, None, 0, 0, []
    for epoch in range(1, epochs + 1):
        train_loss = _train_epoch(model, train_loader, opt, sched, task, epoch <= frozen_epochs, averaged)
        score = task_metrics(data.y[val], predict(val), task).get(metric, float("nan"))
        record = {"epoch": epoch, "train_loss": train_loss, f"val_{metric}": score}
        record["lr"] = opt.param_groups[0]["lr"]  # the head's
        curve.append(record)
        if best is None or (not np.isnan(score) and (score > best if higher else score < best)):
            best, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(scored.state_dict())
        else:
            bad += 1
        if on_epoch is not None:
            on_epoch(epoch, model, record)
        if bad >= patience:
            break
    if best_state is not None:
        scored.load_state_dict(best_state)
    test_pred = predict(test)
    return FitResult(
        test=task_metrics(data.y[test], test_pred, task),
        val=task_metrics(data.y[val], predict(val), task),
        best_epoch=best_epoch,
        curve=curve,
        model=scored,
        test_pred=test_pred,
        feature_scaler=scaler,
    )


def embed_graphs(encoder, graphs: list, batch_size: int = 256) -> np.ndarray:
    """Frozen embeddings (eval mode, no gradients) of a list of PyG graphs."""
    import torch
    from torch_geometric.loader import DataLoader

    encoder.eval()
    out = []
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=batch_size):
            out.append(encoder(batch).float().numpy())
    return np.concatenate(out)


def linear_probe_task(
    x: np.ndarray, data: LabelledSet, split: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int
) -> dict[str, float]:
    """Linear model on frozen embeddings per task (RidgeCV / CV-tuned logistic on train); test scores."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, _, test = split
    pred = np.full((len(test), data.y.shape[1]), np.nan)
    for t in range(data.y.shape[1]):
        keep = train[~np.isnan(data.y[train, t])]
        y = data.y[keep, t]
        if data.task == "regression":
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
            pred[:, t] = model.fit(x[keep], y).predict(x[test])
        else:
            counts = np.bincount(y.astype(int), minlength=2)
            if counts.min() < 3:
                continue
            cv = StratifiedKFold(min(3, int(counts.min())), shuffle=True, random_state=seed)
            grid = {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]}
            pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            model = GridSearchCV(pipe, grid, cv=cv, scoring="roc_auc")
            pred[:, t] = model.fit(x[keep], y.astype(int)).predict_proba(x[test])[:, 1]
    scored = ~np.isnan(pred).all(axis=0)
    return task_metrics(data.y[test][:, scored], pred[:, scored], data.task)
