"""The image teacher at scale from a SMILES file, without the shards/MLflow stack (a GPU node, a sweep):
depict (Img2Mol preprocessing, one process per core) -> rxnfp CLS embeddings (the frozen SMILES teacher)
-> `train_image_teacher` -> held-out image -> rxnfp R@1 in pools of 1,000 beside the untrained twin.
The library functions are those `acml depict` and `acml pretrain-teacher image` run.

    python benchmarks/image_teacher.py --smiles moses_train.csv.gz --molecules 50000 --device cuda \
        --width 64 --resolution 128 --epochs 30 --batch-size 512
    python benchmarks/image_teacher.py --molecules 2000 --epochs 3     # CPU smoke run (MOSES from molsets)

Prints stage timings and one JSON line last; `--save DIR` writes the trained CNN as an `image_cnn`
teacher (weights.pt + teacher_config.json)."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
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


def depict_all(smiles: list[str], workers: int) -> tuple[list[str], Any]:
    """(canonical SMILES, uint8 images (N, 224, 224)) of the molecules RDKit reads and draws."""
    import numpy as np

    if workers > 1:
        from multiprocessing import Pool

        with Pool(workers) as pool:
            drawn = pool.map(_depict, smiles, chunksize=64)
    else:
        drawn = [_depict(s) for s in smiles]
    keep = [(s, im) for s, im in drawn if s is not None]
    return [s for s, _ in keep], np.stack([im for _, im in keep])


def embed_rxnfp(smiles: list[str], path: Optional[str], device: str) -> Any:
    """rxnfp CLS embeddings (float32, rounded through float16 as the cache stores them)."""
    import numpy as np
    import torch

    from acml_dist.teachers.smiles_lm import SmilesLMTeacher, rxnfp_model_dir

    cfg = _TeacherCfg(path=path or str(rxnfp_model_dir()), device=device,
                      params={"tokenizer": "regex", "template": "{}>>"})  # fmt: skip
    teacher = SmilesLMTeacher("rxnfp", cfg)  # type: ignore[arg-type]
    teacher.model.float()  # fp32 on any device, as the CPU cache
    teacher.dtype = torch.float32
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
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--convs-per-block", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val", type=int, default=1000, help="held-out molecules (the pool is 1,000)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None)
    return p.parse_args(argv)


def save(model: Any, arch: dict[str, int], folder: str) -> None:
    """The trained CNN as an `image_cnn` teacher: weights.pt + teacher_config.json."""
    import torch

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    conf = {"kind": "image_cnn", "modality": "image", "path": str(out / "weights.pt"), "params": arch}
    (out / "teacher_config.json").write_text(json.dumps(conf, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from acml_dist.teachers.image_pretrain import train_image_teacher

    times: dict[str, float] = {}
    t = time.perf_counter()
    smiles = read_smiles(args.smiles, args.molecules, args.seed)
    canon, images = depict_all(smiles, args.workers)
    times["depict_s"] = time.perf_counter() - t
    print(f"depicted {len(canon)}/{len(smiles)} in {times['depict_s']:.1f} s ({args.workers} processes)")
    t = time.perf_counter()
    y = embed_rxnfp(canon, args.rxnfp, args.device)
    times["embed_s"] = time.perf_counter() - t
    print(f"rxnfp embedded {len(canon)} in {times['embed_s']:.1f} s")

    t = time.perf_counter()
    arch = {"width": args.width, "resolution": args.resolution, "blocks": args.blocks,
            "convs_per_block": args.convs_per_block}  # fmt: skip

    def on_epoch(epoch: int, loss: float) -> None:
        took = time.perf_counter() - t
        print(f"epoch {epoch + 1}/{args.epochs} loss {loss:.4f} ({took:.0f} s)", flush=True)

    r = train_image_teacher(images, y, arch=arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            val_fraction=args.val / len(images), pool=1000, seed=args.seed,
                            device=args.device, on_epoch=on_epoch)  # fmt: skip
    times["train_s"] = time.perf_counter() - t
    params = sum(p.numel() for p in r["model"].parameters())
    ratio = r["val_r1"] / max(r["untrained_val_r1"], r["chance_r1"])
    print(f"held out {r['n_val']} (pool {min(1000, r['n_val'])}): R@1 trained {r['val_r1']:.3f}, untrained "
          f"twin {r['untrained_val_r1']:.3f}, chance {r['chance_r1']:.4f}; {ratio:.0f}x; train R@1 "
          f"{r['train_r1']:.3f}; {r['images_per_s']:.0f} images/s; {params / 1e6:.1f} M params")  # fmt: skip
    if args.save:
        save(r["model"], r["arch"], args.save)
    keys = ("val_r1", "untrained_val_r1", "chance_r1", "train_r1", "n_train", "n_val", "images_per_s",
            "history", "arch")  # fmt: skip
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    run = {"molecules": len(canon), "params": params, "epochs": args.epochs, "batch_size": args.batch_size,
           "lr": args.lr, "device": device}  # fmt: skip
    print(json.dumps({**{k: r[k] for k in keys}, **times, **run}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
