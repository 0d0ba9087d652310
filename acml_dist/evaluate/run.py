"""The `acml evaluate` job: gather embeddings, compute every metric against its baseline, draw the
figures, write the markdown report (outputs.py), log everything to MLflow. Its helpers also serve
`acml finetune` (finetune_job.py)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from acml_dist.context import MlflowSession, RunContext
from acml_dist.evaluate import plots, report
from acml_dist.evaluate.isomers import isomer_table, top1_in_sets
from acml_dist.evaluate.labelled import load_labelled_set
from acml_dist.evaluate.modality_probes import probe_section
from acml_dist.evaluate.outputs import key, log_to_mlflow, output_dir, write_report
from acml_dist.evaluate.probes import descriptor_frame
from acml_dist.evaluate.properties import fresh_like, run_property_task, schema_of
from acml_dist.evaluate.retrieval import headline_top1, recall_curve, retrieval_ranks, retrieval_table
from acml_dist.log import get_logger

log = get_logger("evaluate")


# ---------------------------------------------------------------- shared helpers


def load(cfg: Any, ctx: Optional[RunContext] = None):
    """The model named by cfg.model: a saved-model dir, a run dir, or a `models:/` / `runs:/` URI."""
    from acml_dist.models.io import load_model
    from acml_dist.tracking import resolve_model_dir, use_store_for

    use_store_for(cfg, str(cfg.model), ctx)
    model_dir = resolve_model_dir(cfg.model)
    log.info("model %s -> %s", cfg.model, model_dir)
    return load_model(model_dir), model_dir


@contextmanager
def cpu_threads(n: int):
    """Cap torch's intra-op threads for the job (CPU only), restored afterwards."""
    before = torch.get_num_threads()
    if n and not torch.cuda.is_available():
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mlflow_run(cfg: Any, run_name: str) -> AbstractContextManager[Optional[MlflowSession]]:
    """The job's MLflow run (`RunContext.mlflow_run`: the active run, else a new one); None when disabled."""
    return RunContext.from_config(cfg).mlflow_run(run_name)


def property_metrics(name: str, result: dict) -> dict[str, float]:
    out = {}
    for method, scores in result["summary"].items():
        for metric, (mean, std) in scores.items():
            out[key(name, method, metric, "mean")] = mean
            out[key(name, method, metric, "std")] = std
    paired = result.get("paired")
    if paired:  # fine-tuned - scratch per seed, and whether the seeds resolve it
        out[key(name, "paired", paired["metric"], "diff")] = paired["mean_diff"]
        out[key(name, "paired", paired["metric"], "p")] = paired["p"]
    return out


def run_dataset(
    model: Any,
    data: Any,
    ecfg: Any,
    split_kind: str,
    fractions: Any,
    out: Path,
    keep_predictors: bool = False,
) -> dict:
    """One labelled set's property section, its curves in `out`/figures; each finished fit is kept in
    `out`/fits, so the same command run again after a crash refits only what had not finished (with
    `keep_predictors`, the fine-tuned ACML predictors too)."""
    fits = out / "fits"
    result = run_property_task(model, data, ecfg, split_kind, fractions, fits, keep_predictors)
    metric = "rmse" if data.task == "regression" else "roc_auc"
    path = out / "figures" / f"finetune_{data.name}.png"
    plots.finetune_curves(result["curves"], metric, path, f"{data.name}: seed {ecfg.seeds[0]}")
    result.update(
        task=data.task,
        rows=data.rows,
        valid=len(data.graphs),
        invalid=len(data.invalid),
        missing_labels=data.missing_labels,
        invalid_rows=data.invalid,
        figure=path,
    )
    return result


# ---------------------------------------------------------------- acml evaluate


def collect(model: Any, root: Path, ecfg: Any, teachers: list[str], baseline: bool = True) -> dict:
    """Graph representations, projections and teacher embeddings of the evaluated split (eval mode);
    `baseline`: also a random-init twin's representations (`h_random`, for the probes)."""
    from acml_dist.data.loader import make_loader

    random_init = fresh_like(model, 0).eval() if baseline else None
    model.eval()
    out: dict[str, list] = {"h": [], "h_random": [], "smiles": [], "formula": []}
    for name in teachers:
        out.update({f"g:{name}": [], f"t:{name}": [], f"raw:{name}": [], f"mask:{name}": []})
    seen = 0
    loader = make_loader(str(root), ecfg.split, 256, schema=schema_of(model), teachers=tuple(teachers))
    with torch.no_grad():
        for batch in loader:
            h = model.encode(batch.graph)
            out["h"].append(h.numpy())
            if random_init is not None:
                out["h_random"].append(random_init.encode(batch.graph).numpy())
            out["smiles"] += list(batch.smiles)
            out["formula"] += [m.get("formula", "") for m in batch.meta]
            for name in teachers:
                emb = batch.embeddings[name].float()
                out[f"g:{name}"].append(model.project_graph(h, name).numpy())
                out[f"t:{name}"].append(model.project_teacher(emb, name).numpy())
                out[f"raw:{name}"].append(emb.numpy())
                out[f"mask:{name}"].append(batch.masks[name].numpy())
            seen += len(batch.smiles)
            if ecfg.max_molecules and seen >= ecfg.max_molecules:
                break
    cap = ecfg.max_molecules or seen
    arrays = {
        k: (np.concatenate(v)[:cap] if k not in ("smiles", "formula") else v[:cap])
        for k, v in out.items()
        if v or k in ("smiles", "formula")
    }
    log.info("collected %d molecules of split %s from %s", len(arrays["smiles"]), ecfg.split, root)
    return arrays


def retrieval_section(data: dict, teachers: list[str], ecfg: Any, figures: Path) -> tuple[str, dict, dict]:
    text, metrics, curves = [], {}, {}
    for i, name in enumerate(teachers):
        sel = data[f"mask:{name}"].astype(bool)
        g, t = data[f"g:{name}"][sel], data[f"t:{name}"][sel]
        rows = retrieval_table(g, t, list(ecfg.retrieval_pools), list(ecfg.topk), chunk=ecfg.retrieval_chunk)
        for row in rows:
            for m in [f"r@{k}" for k in ecfg.topk] + ["mrr", "mean_rank"]:
                metrics[key("retrieval", name, row["direction"], f"pool{row['pool']}", m)] = row[m]
        if i == 0:  # headline numbers for the registry: first teacher
            metrics.update(headline_top1(rows))
        max_k = min(100, len(g))
        for direction, (q, k) in {"graph->teacher": (g, t), "teacher->graph": (t, g)}.items():
            curves[f"{name} {direction} (all {len(g)})"] = recall_curve(retrieval_ranks(q, k, 0), max_k)
        columns = (
            ["direction", "pool", "n"] + [f"r@{k}" for k in ecfg.topk] + ["mrr", "mean_rank", "chance_r@1"]
        )
        text.append(
            f"**{name}** ({int(sel.sum())} molecules with this modality):\n\n" + report.table(rows, columns)
        )
    plots.recall_curves(curves, figures / "retrieval_recall.png")
    return "\n\n".join(text), metrics, curves


def isomer_section(
    data: dict, teachers: list[str], figures: Path, reference: Optional[str] = None
) -> tuple[str, dict]:
    text, metrics = [], {}
    for i, name in enumerate(teachers):
        sel = data[f"mask:{name}"].astype(bool)
        formulas = [f for f, s in zip(data["formula"], sel) if s]
        rows = isomer_table(data[f"g:{name}"][sel], data[f"t:{name}"][sel], formulas)
        if not rows:
            text.append(f"**{name}**: no isomer sets among the evaluated molecules.")
            continue
        for r in (r for r in rows if r["set_size"] == "all"):
            for m in ("top1", "mrr", "chance_top1", "chance_mrr"):
                metrics[key("isomer", name, r["direction"], m)] = r[m]
        if i == 0:
            plots.isomer_bars(rows, figures / "isomer_top1.png")
        columns = ["direction", "set_size", "molecules", "sets", "top1", "chance_top1", "mrr", "chance_mrr"]
        text.append(f"**{name}**:\n\n" + report.table(rows, columns))
    text.append(sparse_isomer_comparison(data, teachers, metrics, reference))
    return "\n\n".join(t for t in text if t), metrics


def sparse_isomer_comparison(
    data: dict, teachers: list[str], metrics: dict, ref: Optional[str] = None
) -> str:
    """Each sparse modality beside the reference teacher `ref` (the SMILES teacher; None: the first teacher
    every molecule has) on the same molecules, sets of 2-10 isomers: the tables above pool different
    molecules per modality."""
    dense = [t for t in teachers if data[f"mask:{t}"].all()]
    ref = ref if ref in teachers else (dense[0] if dense else None)
    rows: list[dict] = []
    for name in (t for t in teachers if ref is not None and t != ref):
        sel = data[f"mask:{name}"].astype(bool) & data[f"mask:{ref}"].astype(bool)
        if sel.all() or not sel.any():
            continue
        formulas = [f for f, s in zip(data["formula"], sel) if s]
        mine = top1_in_sets(data[f"g:{name}"][sel], data[f"t:{name}"][sel], formulas)
        theirs = top1_in_sets(data[f"g:{ref}"][sel], data[f"t:{ref}"][sel], formulas)
        if not mine["molecules"]:
            continue
        metrics[key("isomer", name, "sets2_10_top1")] = mine["top1"]
        metrics[key("isomer", name, "sets2_10", ref, "top1")] = theirs["top1"]
        rows.append({"modality": name, "molecules": mine["molecules"], "top1": mine["top1"],
                     "ref": theirs["top1"], "chance": mine["chance_top1"]})  # fmt: skip
    if not rows:
        return ""
    headers = ["modality", "molecules in sets of 2-10", "graph -> modality top-1",
               f"graph -> {ref} top-1, same molecules", "chance"]  # fmt: skip
    return (f"Sparse modalities beside **{ref}** on the same molecules (isomer sets of 2-10 among the "
            "molecules that have the modality):\n\n"
            + report.table(rows, ["modality", "molecules", "top1", "ref", "chance"], headers))  # fmt: skip


def attribution_section(model: Any, data: dict, ecfg: Any, figures: Path) -> str:
    from sklearn.linear_model import RidgeCV

    from acml_dist.evaluate.attributions import draw_attributions, occlusion_attributions

    n = min(len(data["smiles"]), ecfg.probe_molecules)
    logp = descriptor_frame(data["smiles"][:n])["logP"].to_numpy()
    ok = ~np.isnan(logp)
    probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(data["h"][:n][ok], logp[ok])
    lines = []
    for i in range(min(ecfg.attributions, n)):
        smi = data["smiles"][i]
        mol, weights = occlusion_attributions(model, smi, schema_of(model), probe.predict)
        path = draw_attributions(mol, weights, figures / f"attribution_{i}.png")
        lines.append(f"![{smi}](figures/{path.name})")
    return (
        "Occlusion attributions of a linear logP probe on the ACML GIN embedding "
        "(green: the atom raises predicted logP, pink: lowers it):\n\n" + " ".join(lines)
    )


def shard_sections(
    model: Any, root: Path, ecfg: Any, teachers: list[str], figures: Path, reference: Optional[str] = None
) -> tuple[list, dict]:
    """Retrieval, isomers, probes, attributions and the map on the featurised test split; `reference`: the
    teacher sparse modalities are compared with (the SMILES teacher)."""
    data = collect(model, root, ecfg, teachers)
    metrics: dict[str, Any] = {"eval_molecules": len(data["smiles"])}
    text, m, _ = retrieval_section(data, teachers, ecfg, figures)
    metrics.update(m)
    sections = [report.RETRIEVAL_INTRO + text + "\n\n![recall@k](figures/retrieval_recall.png)"]
    if ecfg.isomers:
        text, m = isomer_section(data, teachers, figures, reference)
        metrics.update(m)
        fig = "\n\n![isomers](figures/isomer_top1.png)" if (figures / "isomer_top1.png").exists() else ""
        sections.append(report.ISOMER_INTRO + text + fig)
    if ecfg.probing:
        text, m, _ = probe_section(data, teachers, ecfg, figures)
        metrics.update(m)
        sections.append(report.PROBE_INTRO + text + "\n\n![probes](figures/probes.png)")
        if ecfg.attributions:
            sections.append("### Atom attributions\n\n" + attribution_section(model, data, ecfg, figures))
    if ecfg.embedding_map and len(data["smiles"]) >= 10:
        n = min(len(data["smiles"]), 3000)
        logp = descriptor_frame(data["smiles"][:n])["logP"].to_numpy()
        _, method = plots.embedding_map(data["h"][:n], np.nan_to_num(logp), "logP", figures / "map.png")
        sections.append(
            f"## Embedding map\n\n{method} of {n} graph embeddings, coloured by logP."
            "\n\n![map](figures/map.png)"
        )
    return sections, metrics


def property_sections(model: Any, ecfg: Any, out: Path) -> tuple[str, dict]:
    """Every dataset of `eval.property_datasets`; unavailable (offline) ones are reported, not fatal."""
    results, failures, metrics = {}, {}, {}
    for name in ecfg.property_datasets:
        data_cfg = OmegaConf.structured(_data_config(name, ecfg.split_kind))
        try:
            labelled = load_labelled_set(data_cfg, name, schema_of(model), progress=ecfg.progress)
        except Exception as exc:  # offline sources fail with their own message; report it, go on
            log.warning("property dataset %s unavailable: %s", name, exc)
            failures[name] = str(exc)
            continue
        results[name] = run_dataset(model, labelled, ecfg, ecfg.split_kind, data_cfg.split_fractions, out)
        metrics.update(property_metrics(name, results[name]))
    if not (results or failures):
        return "", metrics
    return report.property_report(results, failures, ecfg, ecfg.split_kind), metrics


def provenance(root: Path, model_dir: Path) -> str:
    """Where the test molecules and the model came from: the shard manifest and the training history."""
    lines = []
    manifest = root / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        data = m.get("data", {})
        lines.append(
            f"- corpus: `{data.get('source')}` (limit {data.get('limit')}), {data.get('split')} split "
            f"{data.get('split_fractions')}, counts {m.get('counts')}, leakage exclusion list "
            f"`{data.get('exclude')}`"
        )
    history = model_dir.parent / "history.json"
    if history.exists():
        steps = json.loads(history.read_text())
        if steps:
            last = steps[-1]
            lines.append(
                f"- training: {len(steps)} logged steps, last step {last.get('step')}, loss "
                f"{report.fmt(float(last.get('loss', float('nan'))))}"
            )
    return "\n".join(lines)


def run_evaluate(cfg: Any) -> dict:
    ecfg, ctx = cfg.eval, RunContext.from_config(cfg)
    model, model_dir = load(cfg, ctx)
    out = output_dir(cfg, "evaluation", ctx)
    figures = out / "figures"
    root = ctx.dataset_dir
    wanted = list(cfg.teachers) if cfg.teachers else []
    teachers = [t for t in model.teachers if not wanted or t in wanted] or list(model.teachers)
    smiles = [t for t in wanted if t in teachers and cfg.teachers[t].get("modality") == "smiles"]
    metrics: dict[str, Any] = {}
    sections = [
        f"# ACML evaluation: `{cfg.model}`\n\nModel dir `{model_dir}`, architecture "
        f"`{json.dumps(model.model_cfg, sort_keys=True)}`, teachers {teachers}. "
        f"Test molecules: split `{ecfg.split}` of `{root}`.",
        provenance(root, Path(model_dir)),
    ]
    with cpu_threads(ecfg.num_threads), ctx.mlflow_run(f"evaluate-{cfg.name}") as run:
        if (root / "manifest.json").exists():
            more, m = shard_sections(model, root, ecfg, teachers, figures, smiles[0] if smiles else None)
            sections += more
            metrics.update(m)
        else:
            log.warning("no featurised shards at %s: retrieval, isomers and probes skipped", root)
            sections.append(f"No featurised test shards at `{root}`: retrieval, isomers and probes skipped.")
        text, m = property_sections(model, ecfg, out)
        sections.append(text)
        metrics.update(m)
        command = f"acml evaluate model={cfg.model} name={cfg.name}"
        command += f" eval.report={ecfg.report}" if ecfg.report else ""
        sections.append(f"## Reproduce\n\n```\n{command}\n```")
        write_report(out, [s for s in sections if s], metrics, ecfg, model_dir=str(model_dir))
        log_to_mlflow(
            run, metrics, out, {"model": cfg.model, "model_dir": str(model_dir), "shards": str(root)}
        )
    headline = [
        k for k in metrics if k.startswith(("retrieval_top1", "isomer_")) and k.endswith(("top1", "mrr"))
    ]
    headline += [k for k in metrics if k.endswith(("rmse_mean", "roc_auc_mean"))]
    report.print_summary(f"acml evaluate {cfg.name}", metrics, headline or None)
    return metrics


def _data_config(name: str, split_kind: str):
    from acml_dist.config.data import DataConfig

    # Benchmarks keep every molecule RDKit can read: no heavy-atom floor (ESOL has methane).
    cfg = DataConfig(source=name, split=split_kind)
    cfg.standardize.min_heavy_atoms = 1
    return cfg
