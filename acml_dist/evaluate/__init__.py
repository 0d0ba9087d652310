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
    """Fine-tune the model on a labelled dataset (registry name or a CSV / TSV / Parquet / SDF file) against
    the from-scratch baseline."""
    from acml_dist.evaluate.finetune_job import run_finetune

    return run_finetune(cfg)


def champion_metrics(model: Any, root: Any, ecfg: Any = None) -> dict[str, float]:
    """The champion metric as `evaluate` computes it, without the rest of the report: `retrieval_top1`
    (graph -> first teacher of the model, R@1 in pools of the first `eval.retrieval_pools` size on
    `eval.split`) and `retrieval_top1_pool<N|all>`. `ecfg` None: the EvalConfig defaults (test, pool 128).
    The trainer registers with these, so the champion alias is decided by one metric computed one way."""
    from omegaconf import OmegaConf

    from acml_dist.config.eval import EvalConfig
    from acml_dist.data.shards import dataset_manifest
    from acml_dist.evaluate.retrieval import headline_top1, retrieval_table
    from acml_dist.evaluate.run import collect

    ecfg = ecfg if ecfg is not None else OmegaConf.structured(EvalConfig())
    if not dataset_manifest(root).get("splits", {}).get(ecfg.split, {}).get("samples"):
        return {}  # no molecules to rank: no champion metric (the registry keeps its champion)
    first = list(model.teachers)[0]
    data = collect(model, root, ecfg, [first], baseline=False)
    sel = data[f"mask:{first}"].astype(bool)
    rows = retrieval_table(
        data[f"g:{first}"][sel], data[f"t:{first}"][sel], list(ecfg.retrieval_pools), [1],
        chunk=ecfg.retrieval_chunk,
    )  # fmt: skip
    return headline_top1(rows)


__all__ = ["champion_metrics", "evaluate", "finetune"]
