"""Where an evaluation job's results go, for `acml evaluate` (run.py) and `acml finetune` (finetune_job.py):
the output folder, report.md and metrics.json (finite metrics under MLflow-safe names), and MLflow."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Optional

from acml_dist.context import RunContext
from acml_dist.log import get_logger

log = get_logger("evaluate")


def key(*parts: Any) -> str:
    """MLflow-safe flat metric name."""
    text = "_".join(str(p) for p in parts if p != "")
    return text.replace("->", "2").replace("@", "").replace(" ", "_").replace("/", "_")


def finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def log_to_mlflow(run: Any, metrics: dict[str, Any], out: Path, params: dict[str, Any]) -> None:
    if run is None:
        return
    import mlflow

    from acml_dist.redact import redact_value

    mlflow.log_params({k: redact_value(k, v)[:500] for k, v in params.items()})
    mlflow.log_metrics(finite(metrics))
    for item in sorted(out.iterdir()):
        if item.name == "fits":  # the resume cache (scores, kept weights: copied to predictors/), no result
            continue
        if item.is_dir():
            mlflow.log_artifacts(str(item), artifact_path=f"{out.name}/{item.name}")
        else:
            mlflow.log_artifact(str(item), artifact_path=out.name)


def output_dir(cfg: Any, default_leaf: str, ctx: Optional[RunContext] = None) -> Path:
    """cfg.output, else <run dir>/<default_leaf> (evaluation, finetune), with its figures/ folder."""
    run = (ctx or RunContext.from_config(cfg)).run_dir
    out = Path(cfg.output) if cfg.get("output") else run / default_leaf
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out


def write_report(
    out: Path, sections: list[str], metrics: dict, ecfg: Any, model_dir: Optional[str] = None
) -> None:
    """report.md and metrics.json (the finite metrics, plus the `model_dir` evaluated when given: the
    pipeline's evaluate stage is skipped when it names the model it would evaluate)."""
    text = "\n\n".join(sections) + "\n"
    (out / "report.md").write_text(text)
    saved: dict[str, Any] = finite(metrics) | ({"model_dir": model_dir} if model_dir else {})
    (out / "metrics.json").write_text(json.dumps(saved, indent=2, sort_keys=True))
    if ecfg.get("report"):
        target = Path(ecfg.report)
        figures = target.parent / ecfg.report_figures
        figures.mkdir(parents=True, exist_ok=True)
        for png in (out / "figures").glob("*.png"):
            shutil.copy(png, figures / png.name)
        target.write_text(text.replace("](figures/", f"]({ecfg.report_figures}/"))
        log.info("report written to %s (figures in %s)", target, figures)
    log.info("report: %s", out / "report.md")
