"""The whole pipeline as one job: featurise -> embed -> train -> evaluate -> register.

Each stage calls the library function of its issue with a config derived from the `PretrainJob` config. A
stage whose outputs exist and verify is skipped, so a re-submitted job resumes where it stopped. MLflow gets
one parent run and a nested run per stage; a failing stage is named and the job exits non-zero.
Training runs inside Ray Train (`TorchTrainer`): each worker calls the same `acml_dist.train.run(cfg)`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from acml_dist.config import validate
from acml_dist.context import RunContext, use_tracking_store
from acml_dist.data.shards import SCHEMA_VERSION, read_manifest, verify_shard
from acml_dist.errors import DataError, StageError
from acml_dist.log import get_logger
from acml_dist.ray_runtime import ensure_ray
from acml_dist.redact import redact

log = get_logger("pipeline")

STAGES = ("featurize", "embed", "train", "evaluate", "register")


# ----------------------------------------------------------------------------------------------- paths
def run_context(cfg: DictConfig) -> RunContext:
    """The pipeline's one context (absolute paths: Ray workers and the launcher's ranks share them); each
    stage's config names its dataset and run folders from it."""
    return RunContext.from_config(
        OmegaConf.merge(cfg, {"shards_root": str(Path(cfg.shards_root).resolve()),
                              "runs_root": str(Path(cfg.runs_root).resolve())})
    )  # fmt: skip


def dataset_dir(cfg: DictConfig) -> Path:
    return run_context(cfg).dataset_dir


def run_dir(cfg: DictConfig) -> Path:
    return run_context(cfg).run_dir


# ------------------------------------------------------------------------------------ stage configs
def _section(cfg: DictConfig, *keys: str) -> dict[str, Any]:
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in keys
    }


def featurize_config(cfg: DictConfig) -> DictConfig:
    sub = _section(cfg, "name", "input", "shards_root", "overwrite", "data", "cluster")
    sub["shards_root"] = str(Path(cfg.shards_root).resolve())
    return validate("featurize", sub)


def embed_config(cfg: DictConfig, teachers: list[str] | None = None) -> DictConfig:
    """The embed stage's config; `teachers` limits it to those whose cache does not verify yet."""
    sub = _section(cfg, "name", "overwrite", "teachers", "cluster", "tracking")
    sub["shards"] = str(dataset_dir(cfg))
    if teachers is not None:
        sub["teachers"] = {k: v for k, v in sub["teachers"].items() if k in teachers}
    return validate("embed", sub)


def train_config(cfg: DictConfig) -> DictConfig:
    sub = _section(cfg, "name", "teachers", "model", "loss", "trainer", "cluster", "tracking")
    sub.update(
        shards=str(dataset_dir(cfg)), output=str(run_dir(cfg)), runs_root=str(Path(cfg.runs_root).resolve())
    )
    return validate("train", sub)


def evaluate_config(cfg: DictConfig, model_dir: str) -> DictConfig:
    sub = _section(cfg, "name", "teachers", "eval", "tracking")
    sub.update(
        model=model_dir,
        shards=str(dataset_dir(cfg)),
        output=str(run_dir(cfg) / "evaluation"),
        runs_root=str(Path(cfg.runs_root).resolve()),
    )
    return validate("evaluate", sub)


# ---------------------------------------------------------------------------------- verification
def shards_verify(root: Path) -> bool:
    """True when `root/manifest.json` is complete and every shard it lists is there with its sha256
    (graph shards and embedding caches share the manifest layout)."""
    manifest = read_manifest(root)
    if not manifest or not manifest.get("splits") or manifest.get("complete") is False:
        return False
    if manifest.get("schema_version") != SCHEMA_VERSION:
        log.info(
            "%s: shards of schema %s, not %d; the stage will run",
            root,
            manifest.get("schema_version"),
            SCHEMA_VERSION,
        )
        return False
    for info in manifest["splits"].values():
        for entry in info.get("shards", []):
            if not verify_shard(root, entry):
                log.info("%s: shard %s does not verify; the stage will run", root, entry["name"])
                return False
    return True


# ------------------------------------------------------------------------------------------ stages
def stage_featurize(cfg: DictConfig) -> dict:
    from acml_dist.data.featurize import featurize_corpus

    root = dataset_dir(cfg)
    if not cfg.overwrite and shards_verify(root):
        return {"skipped": True, **json.loads((root / "manifest.json").read_text()).get("counts", {})}
    return featurize_corpus(featurize_config(cfg))


def stage_embed(cfg: DictConfig) -> dict:
    from acml_dist.teachers.cache import embed_dataset

    root = dataset_dir(cfg)
    todo = [name for name in cfg.teachers if cfg.overwrite or not shards_verify(root / "embeddings" / name)]
    if not todo:
        return {"skipped": True}
    return embed_dataset(embed_config(cfg, todo))


def _train_worker(loop_config: dict) -> None:
    """Runs in every Ray Train worker: torch.distributed is already set up by Ray; DeepSpeed joins it."""
    from acml_dist.train import run

    if loop_config.get("mlflow_run_id"):
        os.environ["MLFLOW_RUN_ID"] = loop_config["mlflow_run_id"]
    if loop_config.get("tracking_uri"):
        os.environ["MLFLOW_TRACKING_URI"] = loop_config["tracking_uri"]
    run(validate("train", loop_config["cfg"]))  # rank 0 writes <output>/train_result.json


def stage_train(cfg: DictConfig, mlflow_run_id: str | None, tracking_uri: str | None) -> dict:
    out = run_dir(cfg)
    result_path = out / "train_result.json"
    if not cfg.overwrite and result_path.exists():
        result = json.loads(result_path.read_text())
        if Path(result.get("model_dir", "")).exists():
            return {"skipped": True, **result}
    out.mkdir(parents=True, exist_ok=True)
    result_path.unlink(missing_ok=True)
    sub = train_config(cfg)
    loop_config = {
        "cfg": OmegaConf.to_container(sub, resolve=True),
        "mlflow_run_id": mlflow_run_id,
        "tracking_uri": tracking_uri,
    }
    if cfg.cluster.train_launcher == "deepspeed":
        _run_deepspeed_launcher(cfg, loop_config, out)
    elif cfg.cluster.train_workers > 0:
        _run_ray_train(cfg, loop_config, out)
    else:  # train_workers=0: one process in the driver (debugging)
        _train_worker(loop_config)
    return json.loads(result_path.read_text())


def _run_ray_train(cfg: DictConfig, loop_config: dict, out: Path) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = cfg.cluster.gpus_per_worker > 0
    resources = {"CPU": cfg.cluster.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.cluster.gpus_per_worker
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.cluster.train_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(name=f"acml-{cfg.name}", storage_path=str(out / "ray_train")),
    )
    trainer.fit()


def _run_deepspeed_launcher(cfg: DictConfig, loop_config: dict, out: Path) -> None:
    """`deepspeed` launched from the driver, its hostfile built from Ray's alive nodes (GPUs per node as
    slots; the launcher reaches other nodes over ssh, as DeepSpeed expects). On CPU: one node, N ranks."""
    import subprocess
    import sys

    import ray
    import yaml

    config_file = out / "train_config.yaml"
    config_file.write_text(yaml.safe_dump(loop_config["cfg"], sort_keys=False))
    script = Path(__file__).resolve().parent / "train.py"
    cmd = ["deepspeed", "--no_local_rank"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": loop_config.get("tracking_uri") or ""}
    if loop_config.get("mlflow_run_id"):
        env["MLFLOW_RUN_ID"] = loop_config["mlflow_run_id"]
    gpu_nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("GPU", 0) >= 1]
    if cfg.cluster.gpus_per_worker > 0 and gpu_nodes:
        hostfile = out / "hostfile"
        hostfile.write_text(
            "".join(f"{n['NodeManagerAddress']} slots={int(n['Resources']['GPU'])}\n" for n in gpu_nodes)
        )
        cmd += ["--hostfile", str(hostfile)]
    else:
        env["DS_ACCELERATOR"] = "cpu"
        cmd += ["--num_gpus", str(max(1, cfg.cluster.train_workers))]
    cmd += [str(script), "--config-file", str(config_file)]
    log.info("launching: %s", " ".join(cmd))
    bin_dir = str(Path(sys.executable).parent)  # the launcher and its ranks use this environment's Python
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    if subprocess.call(cmd, env=env) != 0:
        raise RuntimeError(f"deepspeed launcher failed: {' '.join(cmd)}")


def stage_evaluate(cfg: DictConfig, model_dir: str) -> dict:
    from acml_dist.evaluate import evaluate

    out = run_dir(cfg) / "evaluation" / "metrics.json"  # evaluate's, with the model_dir it evaluated
    if not cfg.overwrite and out.exists() and json.loads(out.read_text()).get("model_dir") == model_dir:
        return {"skipped": True, **json.loads(out.read_text())}
    return evaluate(evaluate_config(cfg, model_dir))


def champion_scores(cfg: DictConfig, model_dir: str, train: dict, evaluated: dict) -> dict:
    """The metrics a registered version is tagged with: training's and evaluation's, the champion metric
    always evaluate's (computed here on the saved model when the evaluate stage did not run), never the
    training-time held-out number of the same name."""
    key = cfg.tracking.champion_metric
    scores = {k: v for k, v in train.items() if k != key} | evaluated
    if key not in evaluated:
        from acml_dist.evaluate import champion_metrics
        from acml_dist.models.io import load_model

        scores.update(champion_metrics(load_model(model_dir), dataset_dir(cfg), cfg.eval))
    return scores


def stage_register(cfg: DictConfig, model_dir: str, metrics: dict) -> dict:
    from acml_dist.tracking import register_model

    marker = run_dir(cfg) / "registered.json"
    if not cfg.overwrite and marker.exists() and json.loads(marker.read_text()).get("model_dir") == model_dir:
        return {"skipped": True, **json.loads(marker.read_text())}
    version = register_model(model_dir, metrics, cfg.tracking)
    info = {"model_dir": model_dir, "version": str(version), "name": cfg.tracking.registered_model}
    marker.write_text(json.dumps(info, indent=2))
    return info


# ------------------------------------------------------------------------------------------ driver
def run_pipeline(cfg: DictConfig) -> dict:
    """Run the configured stages in order; returns per-stage results and the final summary."""
    import mlflow

    unknown = set(cfg.stages) - set(STAGES)
    if unknown:
        raise DataError(f"unknown stages {sorted(unknown)}; known: {list(STAGES)}")
    tracking_uri = run_context(cfg).tracking_uri
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    use_tracking_store(tracking_uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    ensure_ray(cfg.cluster, log_to_driver=True)  # training ranks report progress through the driver

    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    started = time.time()
    with mlflow.start_run(run_name=f"pipeline-{cfg.name}") as parent:
        mlflow.log_params({"name": cfg.name, "stages": ",".join(cfg.stages)})
        mlflow.log_text(redact(OmegaConf.to_yaml(cfg)), "config/pretrain.yaml")

        def stage(name: str, fn: Callable[[str | None], dict]) -> dict:
            if name not in cfg.stages:
                return {"skipped": True, "reason": "not in stages"}
            log.info("stage %s: starting", name)
            t0 = time.time()
            with mlflow.start_run(run_name=name, nested=True) as child:
                try:
                    result = fn(child.info.run_id)
                except Exception as exc:  # noqa: BLE001 - re-raised with the stage's name
                    mlflow.set_tag("failed", str(exc)[:500])
                    raise StageError(name, exc) from exc
                numeric = {
                    k: float(v)
                    for k, v in result.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
                if numeric:
                    mlflow.log_metrics(numeric)
            timings[name] = time.time() - t0
            log.info(
                "stage %s: %s in %.1f s", name, "skipped" if result.get("skipped") else "done", timings[name]
            )
            results[name] = result
            return result

        stage("featurize", lambda _run: stage_featurize(cfg))
        stage("embed", lambda _run: stage_embed(cfg))
        train = stage("train", lambda run_id: stage_train(cfg, run_id, tracking_uri))
        model_dir = train.get("model_dir") or _existing_model_dir(cfg)
        metrics = stage("evaluate", lambda _run: stage_evaluate(cfg, model_dir))
        scores = lambda: champion_scores(cfg, model_dir, train, metrics)  # noqa: E731 - only if it runs
        stage("register", lambda _run: stage_register(cfg, model_dir, scores()))
        summary = {
            "wall_s": time.time() - started,
            "parent_run_id": parent.info.run_id,
            "tracking_uri": tracking_uri,
            "timings": timings,
        }
        mlflow.log_dict({"results": results, "summary": summary}, "pipeline_summary.json")
    print_summary(cfg, results, summary)
    return {"results": results, **summary}


def _existing_model_dir(cfg: DictConfig) -> str:
    path = run_dir(cfg) / "train_result.json"
    if path.exists():
        return json.loads(path.read_text())["model_dir"]
    raise FileNotFoundError(f"no trained model under {run_dir(cfg)}: include 'train' in stages")


def print_summary(cfg: DictConfig, results: dict, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"acml pipeline '{cfg.name}' ({summary['wall_s']:.0f} s)")
    table.add_column("stage")
    table.add_column("time (s)", justify="right")
    table.add_column("result")
    for name in STAGES:
        if name in results:
            shown = stage_highlights(name, results[name])
            if results[name].get("skipped"):
                shown.insert(0, "(verified, skipped)")
            table.add_row(name, f"{summary['timings'].get(name, 0):.1f}", " ".join(shown))
    Console().print(table)
    print(f"MLflow: {redact(str(summary['tracking_uri']))} (parent run {summary['parent_run_id']})")


def stage_highlights(name: str, res: dict) -> list[str]:
    """The few numbers of a stage's result worth a glance in the final table."""
    if name == "featurize":
        counts = res.get("counts", res)
        keys = ["read", "written", "rejected", "duplicates", "excluded"]
        return [f"{k}={counts[k]}" for k in keys if k in counts]
    if name == "embed":
        return [
            f"{t}: dim {info.get('dim')}, {info.get('rate_per_s', 0):.0f} mol/s"
            for t, info in res.get("teachers", {}).items()
        ]
    if name == "train":
        m = res.get("metrics", res)
        keys = ["steps", "world_size", "global_batch", "loss", "retrieval_top1", "molecules_per_s",
                "bad_steps", "skipped_shards"]  # fmt: skip
        return [f"{k}={_fmt(m[k])}" for k in keys if k in m]
    if name == "evaluate":
        return [f"{k}={_fmt(v)}" for k, v in res.items() if k in ("retrieval_top1", "eval_molecules")]
    return [f"{k}={res[k]}" for k in ("name", "version") if k in res]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
