"""The image teacher at scale from a SMILES file, without the shards/MLflow stack (a GPU node, a sweep):
depict (Img2Mol preprocessing at 224 px, area-downsampled to --resolution, one process per core; the rxnfp
teacher loads onto the device meanwhile) -> rxnfp CLS embeddings (the frozen SMILES teacher) ->
`train_image_teacher` (images resident on the device, augmentation batched there) -> held-out image -> rxnfp
R@1 in pools of 1,000 beside the untrained twin. The library functions are those `acml depict` and
`acml pretrain-teacher image` run; Ray and MLflow are not imported.

    # one H200 node, whole command <= 150 s: a timing probe fits the epochs (<= 60) to the budget
    python benchmarks/image_teacher.py --smiles .gpu/corpus.csv.gz --rxnfp .gpu/rxnfp --device cuda \
        --molecules 80000 --width 48 --resolution 128 --epochs 60 --batch-size 512 --lr 2e-3 \
        --workers 16 --max-minutes 2.35 --reserve-s 8 --save $OUT/image_teacher
    python benchmarks/image_teacher.py --molecules 2000 --epochs 3     # CPU smoke run (MOSES from molsets)

Prints stage timings and one JSON line last; `--save DIR` writes the trained CNN as an `image_cnn`
teacher (fp16 weights.pt, 12.6 MiB at width 48 / 128 px, + teacher_config.json)."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class _TeacherCfg:  # the fields a Teacher reads (acml_dist.config.teachers.TeacherConfig without omegaconf)
    kind: str = "smiles_lm"
    modality: str = "smiles"
    path: Optional[str] = None
    pooling: str = "cls"
    batch_size: int = 512
    device: str = "cpu"
    max_length: int = 256
    cpu_threads: int = 0
    params: dict[str, Any] = field(default_factory=dict)


def read_smiles(path: Optional[str], n: int, seed: int) -> list[str]:
    import numpy as np

    if path is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from featurize import corpus_smiles

        return corpus_smiles("moses", n)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = [x.split(",")[0].strip() for x in fh if x.strip()]
    if lines and lines[0].upper() == "SMILES":
        lines = lines[1:]
    idx = np.random.default_rng(seed).permutation(len(lines))[:n]
    return [lines[i] for i in sorted(idx)]


def _depict(smi: str) -> tuple[Optional[str], Any]:
    from rdkit import Chem

    from acml_dist.chem.parse import mol_from_smiles
    from acml_dist.data.image_stage import depict_one

    params = {"size": 224, "border": 15, "store_size": 224, "max_heavy_atoms": 0}
    try:
        mol = mol_from_smiles(smi)
    except ValueError:
        return None, None
    if mol is None:
        return None, None
    img, reason = depict_one(smi, params)
    return (Chem.MolToSmiles(mol), img) if reason is None else (None, None)


def _depict_chunk(job: tuple[list[str], int]) -> tuple[list[str], Any]:
    """Depict a chunk at 224 px and area-downsample it to the training resolution in the worker (the result
    `train_image_teacher` would compute; 224 / r squared less to send back and no serial resize after)."""
    import numpy as np

    from acml_dist.teachers.image_cnn import to_resolution

    smiles, resolution = job
    keep = [(s, im) for s, im in map(_depict, smiles) if s is not None]
    if not keep:
        return [], np.zeros((0, resolution, resolution), np.uint8)
    return [s for s, _ in keep], to_resolution(np.stack([im for _, im in keep]), resolution)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def depict_all(smiles: list[str], workers: int, resolution: int = 224,
               meanwhile: Optional[Callable[[], Any]] = None) -> tuple[list[str], Any, Any]:  # fmt: skip
    """(canonical SMILES, uint8 images (N, r, r), meanwhile()) of the molecules RDKit reads and draws;
    `meanwhile` runs in this process while the pool depicts (loading the SMILES teacher onto the GPU)."""
    import numpy as np

    jobs = [(smiles[i : i + 256], resolution) for i in range(0, len(smiles), 256)]
    if workers > 1:
        from multiprocessing import Pool

        with Pool(workers, initializer=_one_thread) as pool:
            pending = pool.map_async(_depict_chunk, jobs, chunksize=1)
            extra = meanwhile() if meanwhile else None
            drawn = pending.get()
    else:
        drawn = [_depict_chunk(j) for j in jobs]
        extra = meanwhile() if meanwhile else None
    return [s for c, _ in drawn for s in c], np.concatenate([im for _, im in drawn]), extra


def load_rxnfp(path: Optional[str], device: str) -> Any:
    """The frozen rxnfp teacher (regex tokens, "{}>>" template), in fp32 on `device`."""
    import torch

    from acml_dist.teachers.smiles_lm import SmilesLMTeacher, rxnfp_model_dir

    cfg = _TeacherCfg(path=path or str(rxnfp_model_dir()), device=device,
                      params={"tokenizer": "regex", "template": "{}>>"})  # fmt: skip
    teacher = SmilesLMTeacher("rxnfp", cfg)  # type: ignore[arg-type]
    teacher.model.float()  # fp32 on any device, as the CPU cache
    teacher.dtype = torch.float32
    return teacher


def embed_rxnfp(teacher: Any, smiles: list[str]) -> Any:
    """rxnfp CLS embeddings (float32, rounded through float16 as the cache stores them)."""
    import numpy as np

    y = teacher.encode_smiles(smiles).numpy()
    if teacher.unknown_tokens:
        print(f"rxnfp: {teacher.unknown_tokens} unknown tokens")
    return y.astype(np.float16).astype(np.float32)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smiles", default=None, help="SMILES file (.csv/.smi, .gz); default MOSES test")
    p.add_argument("--molecules", type=int, default=2000)
    p.add_argument("--rxnfp", default=None, help="rxnfp bert_pretrained dir (default: the rxnfp package's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--resolution", type=int, default=96)
    p.add_argument("--hidden", type=int, default=0, help="head width (0: 32 x width); sets the saved size")
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--convs-per-block", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val", type=int, default=1000, help="held-out molecules (the pool is 1,000)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the trained CNN here (fp16 weights.pt + config)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall budget of the whole command: training stops (between steps) `--reserve-s` "
        "before it, then the held-out evaluation runs and the JSON line is printed",
    )
    p.add_argument("--no-fit-epochs", dest="fit_epochs", action="store_false",
                   help="with --max-minutes: keep --epochs (default: lower it to what a timing probe says "
                        "fits the budget, so the one-cycle schedule ends instead of being cut)")  # fmt: skip
    p.add_argument("--reserve-s", type=float, default=15.0, help="seconds kept for evaluation and saving")
    return p.parse_args(argv)


def save(model: Any, arch: dict[str, int], folder: str) -> None:
    """The trained CNN as an `image_cnn` teacher: weights.pt (fp16) + teacher_config.json."""
    import torch

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(half, out / "weights.pt")  # fp16: half the size; the teacher loads it into fp32
    conf = {"kind": "image_cnn", "modality": "image", "path": str(out / "weights.pt"), "params": arch}
    (out / "teacher_config.json").write_text(json.dumps(conf, indent=1))


def fit_epochs(
    images: Any, y: Any, arch: dict[str, int], args: argparse.Namespace, budget: float
) -> tuple[int, float]:
    """The most epochs (<= --epochs) whose training fits `budget` seconds, so that the one-cycle schedule
    runs to its end: the steady images/s of the real model and batch on the device, from the second of two
    passes over a slice of 12 batches (the first pays cuDNN's autotuning and the warm-up)."""
    from acml_dist.training.image_pretrain import train_image_teacher
    from acml_dist.training.pair_training import FitOptions

    m = min(len(images), 12 * args.batch_size)
    marks: list[float] = []
    t = time.perf_counter()
    fit = FitOptions(epochs=2, batch_size=args.batch_size, lr=args.lr, val_fraction=0.0, pool=256,
                     seed=args.seed, device=args.device,
                     on_epoch=lambda e, loss: marks.append(time.perf_counter()))  # fmt: skip
    train_image_teacher(images[:m], y[:m], fit, arch=arch)
    rate = m / max(1e-9, marks[1] - marks[0])
    n_train = len(images) - args.val
    left = budget - (time.perf_counter() - t)
    epochs = max(1, min(args.epochs, int(0.92 * left * rate / max(1, n_train))))
    print(f"probe: {rate:.0f} images/s steady on {args.device}; {left:.0f} s left -> {epochs} epochs "
          f"of {n_train}", flush=True)  # fmt: skip
    return epochs, rate


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    import torch

    from acml_dist.training.image_pretrain import train_image_teacher
    from acml_dist.training.pair_training import FitOptions

    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolutions
    times: dict[str, float] = {}
    t = time.perf_counter()
    smiles = read_smiles(args.smiles, args.molecules, args.seed)
    canon, images, teacher = depict_all(smiles, args.workers, args.resolution,
                                        meanwhile=lambda: load_rxnfp(args.rxnfp, args.device))  # fmt: skip
    times["depict_s"] = time.perf_counter() - t
    print(f"depicted {len(canon)}/{len(smiles)} at {args.resolution} px in {times['depict_s']:.1f} s "
          f"({args.workers} processes; rxnfp loaded meanwhile)", flush=True)  # fmt: skip
    t = time.perf_counter()
    y = embed_rxnfp(teacher, canon)
    del teacher
    times["embed_s"] = time.perf_counter() - t
    print(f"rxnfp embedded {len(canon)} in {times['embed_s']:.1f} s", flush=True)

    t = time.perf_counter()
    arch = {"width": args.width, "resolution": args.resolution, "blocks": args.blocks,
            "convs_per_block": args.convs_per_block, "hidden": args.hidden}  # fmt: skip
    budget = None
    if args.max_minutes is not None:
        budget = max(0.0, args.max_minutes * 60 - args.reserve_s - (t - start))
        print(f"training budget {budget:.0f} s", flush=True)

    epochs = args.epochs
    if budget is not None and args.fit_epochs:
        epochs, times["probe_images_per_s"] = fit_epochs(images, y, arch, args, budget)
        budget = max(0.0, args.max_minutes * 60 - args.reserve_s - (time.perf_counter() - start))

    def on_epoch(epoch: int, loss: float) -> None:
        took = time.perf_counter() - t
        print(f"epoch {epoch + 1}/{epochs} loss {loss:.4f} ({took:.0f} s)", flush=True)

    fit = FitOptions(epochs=epochs, batch_size=args.batch_size, lr=args.lr, pool=1000, seed=args.seed,
                     val_fraction=args.val / len(images), device=args.device, on_epoch=on_epoch)  # fmt: skip
    r = train_image_teacher(images, y, fit, arch=arch, max_seconds=budget)
    times["train_s"] = time.perf_counter() - t
    if r["stopped_early"]:
        print(f"training stopped at the budget after {len(r['history'])} full epochs", flush=True)
    params = sum(p.numel() for p in r["model"].parameters())
    ratio = r["val_r1"] / max(r["untrained_val_r1"], r["chance_r1"])
    print(f"held out {r['n_val']} (pool {min(1000, r['n_val'])}): R@1 trained {r['val_r1']:.3f}, untrained "
          f"twin {r['untrained_val_r1']:.3f}, chance {r['chance_r1']:.4f}; {ratio:.0f}x; train R@1 "
          f"{r['train_r1']:.3f}; {r['images_per_s']:.0f} images/s; {params / 1e6:.1f} M params")  # fmt: skip
    if args.save:
        save(r["model"], r["arch"], args.save)
        times["save_mb"] = (Path(args.save) / "weights.pt").stat().st_size / 1e6
    keys = ("val_r1", "untrained_val_r1", "chance_r1", "train_r1", "n_train", "n_val", "images_per_s",
            "stopped_early", "history", "arch")  # fmt: skip
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    run = {"molecules": len(canon), "params": params, "epochs": epochs, "batch_size": args.batch_size,
           "lr": args.lr, "device": device, "wall_s": time.perf_counter() - start}  # fmt: skip
    print(json.dumps({**{k: r[k] for k in keys}, **times, **run}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
