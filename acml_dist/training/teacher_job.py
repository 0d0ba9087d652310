"""`acml pretrain-teacher <modality>`: train a spectrum teacher CReSS-style against a frozen SMILES teacher's
cached embeddings (`training/nmr_pretrain.py`), in one MLflow run (params, loss per epoch, held-out R@1 of
the trained teacher and of its untrained twin, a plot), and register it as `acml-teacher-<name>`
(`teachers/registry.log_teacher`: weights.pt + teacher.json, no pickle), loadable by `load_teacher` with
`path: models:/acml-teacher-<name>/<version>`.

`acml pretrain-teacher image` trains the Img2Mol-style CNN (`teachers/image_cnn.py`) on the depictions of
`acml depict` by regression onto the same frozen embeddings (`training/image_pretrain.py`), same run,
same registry, same held-out table.

Training is DeepSpeed data parallel (`training/pair_training.fit_pairs`): `acml pretrain-teacher ...` is a
world of one; `deepspeed --num_gpus N --no_local_rank --module acml_dist.cli pretrain-teacher ...` runs N
ranks (on CPU: DS_ACCELERATOR=cpu, gloo), each holding all pairs (they fit in memory: the encoders are
small, CReSS 13C 2.3 M parameters, the 1-D conv one 0.8 M for 1,000 bins, the image CNN 0.8 M at width 16)
and training on its slice of each global batch. Rank 0 alone tracks, evaluates, saves and registers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from acml_dist.context import dataset_dir
from acml_dist.errors import InputError
from acml_dist.log import get_logger

log = get_logger("pretrain-teacher")

MODALITIES = ("nmr13c", "nmr1h", "ms", "image")
HOW_TO_MAKE = {
    "nmr13c": "acml nmr-predict name=NAME nuclei=[13C] (or acml import-spectra kind=nmr13c)",
    "nmr1h": "acml nmr-predict name=NAME nuclei=[1H] (or acml import-spectra kind=nmr1h)",
    "ms": "acml import-spectra name=NAME files=[spectra.mgf] modality=ms kind=ms",
    "image": "acml depict name=NAME limit=50000",
}
IMAGE_PARAMS = ("image_width", "image_resolution", "image_blocks", "image_convs_per_block", "image_loss",
                "nce_weight", "temperature", "augment")  # fmt: skip
SPECTRUM_PARAMS = ("peak_shift", "peak_drop")
# Online peak jitter when `peak_shift` is not given, in the spectrum's axis unit (ppm, m/z), measured on the
# mm100k spectra (EVALUATION.md, "Trained teachers"): 13C held-out R@1 0.160 -> 0.423 at +-1 ppm. Mass
# spectra: none (an in-silico or measured fragment mass does not drift).
PEAK_SHIFT = {"nmr13c": 1.0, "nmr1h": 0.1, "ms": 0.0}


def load_pairs(cfg: Any) -> dict[str, Any]:
    """Check the inputs (one-line errors) and join spectra with the target teacher's embeddings."""
    from acml_dist.data.modalities import modality_dir, read_manifest
    from acml_dist.data.shards import read_manifest as dataset_manifest
    from acml_dist.training.nmr_pretrain import paired_arrays

    if cfg.modality not in MODALITIES:
        raise InputError(f"modality must be one of {', '.join(MODALITIES)}, got {cfg.modality!r}")
    root = dataset_dir(cfg)
    spectra = cfg.spectra or cfg.modality
    if dataset_manifest(root) is None:
        raise FileNotFoundError(f"no featurised dataset at {root}: run `acml featurize` first")
    manifest = read_manifest(root, spectra)
    if manifest is None:
        raise FileNotFoundError(
            f"no {spectra} {'depictions' if cfg.modality == 'image' else 'spectra'} at "
            f"{modality_dir(root, spectra)}: "
            f"make them with {HOW_TO_MAKE[cfg.modality]}"
        )
    if not (root / "embeddings" / cfg.target).is_dir():
        raise FileNotFoundError(
            f"no cached {cfg.target} embeddings in {root / 'embeddings'}: run `acml embed shards={root} "
            f"teachers=...` with a teacher named {cfg.target}"
        )
    try:
        if cfg.modality == "image":
            from acml_dist.training.image_pretrain import paired_images

            keys, x, y = paired_images(root, cfg.target, spectra)
        else:
            keys, x, y = paired_arrays(root, cfg.target, spectra)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if len(keys) < 4:
        raise InputError(f"only {len(keys)} molecules of {root} have both a {spectra} spectrum and a "
                         f"{cfg.target} embedding; need at least 4")  # fmt: skip
    groups = None
    if cfg.isomer_batches:
        from acml_dist.training.pair_training import formula_groups

        groups = formula_groups(root, keys)
    written = int(manifest.get("counts", {}).get("written", len(keys)))
    bins = manifest.get("bins") or {}  # the binning: axis units per bin
    width = (bins["high"] - bins["low"]) / bins["n_bins"] if bins.get("n_bins") else None
    return {"root": root, "spectra": spectra, "keys": keys, "x": x, "y": y, "n_spectra": written,
            "bin_width": width, "groups": groups}  # fmt: skip


def shift_bins(cfg: Any, bin_width: Optional[float]) -> int:
    """The peak jitter in bins: `peak_shift` (else the modality's PEAK_SHIFT) in axis units over the bin
    width of the spectra's manifest (none recorded: no jitter unless asked, and then in bins)."""
    shift = PEAK_SHIFT.get(cfg.modality, 0.0) if cfg.peak_shift is None else float(cfg.peak_shift)
    if not bin_width:
        return int(round(shift)) if cfg.peak_shift is not None else 0
    return int(round(shift / bin_width))


def build_teacher(name: str, modality: str, spectra: str, encoder: Any, folder: Path) -> Any:
    """The trained encoder as a frozen teacher of its kind (weights saved under `folder`)."""
    import torch

    from acml_dist.teachers import load_teacher
    from acml_dist.training.nmr_pretrain import save_nmr13c_teacher

    if modality == "image":
        from acml_dist.teachers.image_cnn import ARCH_KEYS

        path = folder / "weights.pt"
        torch.save({k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}, path)
        params = {k: encoder.arch[k] for k in ARCH_KEYS}
        cfg = {"kind": "image_cnn", "modality": spectra, "path": str(path), "params": params}
    elif modality == "nmr13c":
        path = save_nmr13c_teacher(type("Pair", (), {"encoder": encoder})(), folder / "weights.pt")
        cfg = {"kind": "cress_nmr13c", "modality": spectra, "path": str(path)}
    else:
        path = folder / "weights.pt"
        torch.save({k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}, path)
        n_bins, out_dim = encoder.head.in_features, encoder.head.out_features
        params = {"n_bins": n_bins, "out_dim": out_dim}
        cfg = {"kind": "conv1d_spectrum", "modality": spectra, "path": str(path), "params": params}
    (folder / "teacher_config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True))
    return load_teacher(name, {**cfg, "device": "cpu"})


def plot(history: list[float], result: dict[str, Any], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(range(1, len(history) + 1), history, marker="o")
    a.set(xlabel="epoch", ylabel="loss (train)", title=title)
    labels = ["trained", "untrained twin", "chance"]
    values = [result.get("val_r1", 0.0), result.get("untrained_val_r1", 0.0), result.get("chance_r1", 0.0)]
    b.bar(labels, values, color=["tab:blue", "tab:gray", "tab:red"])
    b.set(ylabel="held-out R@1", title=f"modality -> SMILES teacher, pool {result.get('pool')}")
    fig.tight_layout()
    return fig


def train(cfg: Any, data: dict[str, Any], on_epoch: Any) -> dict[str, Any]:
    """The modality's trainer: the image CNN (regression) or a spectrum encoder (CReSS-style CLIP)."""
    from acml_dist.training.pair_training import FitOptions

    fit = FitOptions(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     val_fraction=cfg.val_fraction, pool=cfg.pool, seed=cfg.seed, threads=cfg.threads or None,
                     device=cfg.device, zero_stage=cfg.zero_stage, on_epoch=on_epoch)  # fmt: skip
    if cfg.modality == "image":
        from acml_dist.training.image_pretrain import train_image_teacher

        arch = {"width": cfg.image_width, "resolution": cfg.image_resolution, "blocks": cfg.image_blocks,
                "convs_per_block": cfg.image_convs_per_block}  # fmt: skip
        result = train_image_teacher(data["x"], data["y"], fit, arch=arch, loss=cfg.image_loss,
                                     nce_weight=cfg.nce_weight, temperature=cfg.temperature,
                                     augmentation=cfg.augment, groups=data.get("groups"))  # fmt: skip
        result["model"].arch = result["arch"]  # build_teacher stores it as the teacher's params
        result["model"] = type("Pair", (), {"encoder": result["model"]})()  # the CNN is the encoder
        return result
    from acml_dist.training.nmr_pretrain import train_spectrum_teacher

    return train_spectrum_teacher(data["x"], data["y"], fit, modality=cfg.modality, out_dim=cfg.out_dim,
                                  peak_shift=shift_bins(cfg, data.get("bin_width")),
                                  peak_drop=cfg.peak_drop, groups=data.get("groups"))  # fmt: skip


def pretrain_teacher_job(cfg: Any) -> dict[str, Any]:
    """Train on every rank; rank 0 tracks, saves, registers and prints the held-out table. Returns the
    figures and the version (rank 0), {"ok", "rank"} elsewhere."""
    import torch.distributed as dist

    from acml_dist.training.pair_training import join

    data = load_pairs(cfg)  # input errors before any rank starts DeepSpeed
    rank, world, _ = join(cfg.device)
    try:
        if rank != 0:
            train(cfg, data, on_epoch=None)
            return {"ok": True, "rank": rank}
        return _track_train_register(cfg, data, world)
    finally:
        if world > 1:  # a launched rank leaves its group before exit (gloo's threads die in teardown)
            dist.destroy_process_group()


def _track_train_register(cfg: Any, data: dict[str, Any], world: int) -> dict[str, Any]:
    import mlflow
    from tqdm import tqdm

    from acml_dist.context import resolve_tracking_uri, use_tracking_store
    from acml_dist.teachers.registry import log_teacher, registered_name

    name = cfg.teacher_name or data["spectra"]
    out = Path(cfg.output or Path(cfg.runs_root) / f"teacher-{name}")
    out.mkdir(parents=True, exist_ok=True)
    n = len(data["keys"])
    what = "depictions" if cfg.modality == "image" else "spectra"
    print(f"{data['spectra']}: {data['n_spectra']} {what}, {n} paired with a {cfg.target} embedding; "
          f"{n - round(n * cfg.val_fraction)} train / {round(n * cfg.val_fraction)} held out")  # fmt: skip
    use_tracking_store(resolve_tracking_uri(cfg, cfg.runs_root))
    mlflow.set_experiment(cfg.experiment)
    names = ("modality", "target", "epochs", "batch_size", "lr", "weight_decay", "val_fraction", "pool",
             "out_dim", "seed", "device", "zero_stage", "isomer_batches")  # fmt: skip
    params = {**{k: cfg[k] for k in names}, "world_size": world}
    with mlflow.start_run(run_name=f"pretrain-teacher-{name}") as run:
        params.update({k: cfg[k] for k in (IMAGE_PARAMS if cfg.modality == "image" else SPECTRUM_PARAMS)})
        if cfg.modality != "image":  # the jitter as applied (peak_shift None: the modality's default)
            params["peak_shift_bins"] = shift_bins(cfg, data.get("bin_width"))
        mlflow.log_params({**params, "dataset": str(data["root"]), "spectra": data["spectra"], "pairs": n})
        with tqdm(total=cfg.epochs, desc=f"pretrain-teacher {name}", unit="epoch") as bar:

            def on_epoch(epoch: int, loss: float) -> None:
                mlflow.log_metric("train_loss", loss, step=epoch)
                bar.set_postfix(loss=f"{loss:.3f}")
                bar.update(1)

            result = train(cfg, data, on_epoch)
        result["pool"] = min(cfg.pool, result["n_val"]) if result["n_val"] else None
        names = ("val_r1", "untrained_val_r1", "chance_r1", "train_r1", "untrained_train_r1")
        names += ("n_train", "n_val", "images_per_s")
        metrics = {k: float(result[k]) for k in names if k in result}
        mlflow.log_metrics(metrics)
        fig = plot(result["history"], result, f"{name} ({cfg.modality})")
        fig.savefig(out / "pretrain_teacher.png", dpi=100)
        mlflow.log_figure(fig, "pretrain_teacher.png")
        teacher = build_teacher(name, cfg.modality, data["spectra"], result["model"].encoder, out)
        version = None
        if cfg.register:
            version = log_teacher(teacher)
            client = mlflow.MlflowClient()
            for k in ("val_r1", "untrained_val_r1", "n_train", "n_val"):
                if k in metrics:
                    client.set_model_version_tag(registered_name(name), version, k, str(metrics[k]))
            client.set_model_version_tag(registered_name(name), version, "pool", str(result["pool"]))
    summary = {"teacher": name, "modality": cfg.modality, "run_id": run.info.run_id, "version": version,
               "registered": registered_name(name) if version else None, "output": str(out),
               "pool": result["pool"], **metrics}  # fmt: skip
    (out / "result.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    print_table([summary] + [r for r in registered_results() if r["registered"] != summary["registered"]])
    return {"ok": True, **summary}


def registered_results() -> list[dict[str, Any]]:
    """The latest version of every registered acml-teacher-* that carries a held-out R@1 tag."""
    import mlflow

    client = mlflow.MlflowClient()
    rows = []
    for rm in client.search_registered_models(filter_string="name LIKE 'acml-teacher-%'"):
        versions = sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda v: int(v.version))
        tags = versions[-1].tags if versions else {}
        if "val_r1" in tags:
            rows.append({"registered": rm.name, "version": versions[-1].version,
                         "teacher": rm.name.removeprefix("acml-teacher-"), "modality": "",
                         **{k: float(tags[k]) for k in ("val_r1", "untrained_val_r1", "n_train", "n_val")
                            if k in tags}, "pool": tags.get("pool")})  # fmt: skip
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Trained teachers, held out: modality -> SMILES teacher R@1")
    for col in ("teacher", "registered", "train / held out", "pool", "R@1 trained", "R@1 untrained twin",
                "ratio"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        trained, twin = r.get("val_r1"), r.get("untrained_val_r1")
        ratio = "-" if trained is None or twin is None else f"{trained / twin:.1f}x" if twin else "twin 0"
        table.add_row(
            r["teacher"], f"{r['registered']} v{r['version']}" if r.get("version") else "-",
            f"{int(r.get('n_train', 0))} / {int(r.get('n_val', 0))}", str(r.get("pool") or "-"),
            "-" if trained is None else f"{trained:.3f}", "-" if twin is None else f"{twin:.3f}", ratio,
        )  # fmt: skip
    Console(width=120).print(table)
