"""Evaluation: cross-modal retrieval, isomer discrimination, property prediction, probing, the report.

`evaluate(cfg)` (EvaluateJob) and `finetune(cfg)` (FinetuneJob) are the entry points the CLI, the Ray
pipeline and the tests call; torch and friends load only when they run."""

from __future__ import annotations

from typing import Any


def evaluate(cfg: Any) -> dict:
    """Retrieval, isomers, probes, embedding map and property prediction for one model; writes the report."""
    from acml_dist.evaluate.run import run_evaluate

    return run_evaluate(cfg)


def finetune(cfg: Any) -> dict:
    """Fine-tune the model on a labelled dataset (registry name or CSV) against the from-scratch baseline."""
    from acml_dist.evaluate.finetune_job import run_finetune

    return run_finetune(cfg)


__all__ = ["evaluate", "finetune"]
