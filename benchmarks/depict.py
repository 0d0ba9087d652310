"""Depiction throughput per core and the storage of the `image` modality, as ratios measured in one run.

    python benchmarks/depict.py --quick          # ~30 s
    python benchmarks/depict.py --molecules 500

One process, MOSES molecules, rounds interleaved so load changes hit every contender alike (rates per wall
second and per CPU second of the process: the per-core rate when other jobs share the cores):
`depict_png` (RDKit's drawing alone, what `data.images=true` stores in the shards) and `depict_array`
(the drawing plus Img2Mol's preprocessing, what `acml depict` stores). Storage of the preprocessed
224x224 images: raw uint8, the deflated npz chunk `acml depict` writes, PNG per image, and both at a
downscaled 112 px. Last line: one JSON object."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--molecules", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="100 molecules, 2 rounds")
    args = parser.parse_args(argv)
    n = 100 if args.quick else args.molecules

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from featurize import corpus_smiles

    from acml_dist.chem.depict import depict_array, depict_png
    from acml_dist.chem.parse import mol_from_smiles
    from acml_dist.data.modalities import encode_image_chunk

    mols = [mol_from_smiles(s) for s in corpus_smiles("moses", n * args.rounds)]
    contenders = {"depict_png": depict_png, "depict_array": depict_array}
    wall = dict.fromkeys(contenders, 0.0)
    cpu = dict.fromkeys(contenders, 0.0)
    images = []
    for r in range(args.rounds):
        part = mols[r * n : (r + 1) * n]
        for name, fn in contenders.items():
            t, c = time.perf_counter(), time.process_time()
            out = [fn(m) for m in part]
            wall[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
            if name == "depict_array":
                images += out
    total = n * args.rounds
    rates = {k: {"per_wall_s": total / wall[k], "per_cpu_s": total / cpu[k]} for k in contenders}

    def png_bytes(a: np.ndarray) -> int:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", optimize=True)
        return len(buf.getvalue())

    small = [np.asarray(Image.fromarray(a).resize((112, 112), Image.LANCZOS)) for a in images]
    keys = [f"m{i}" for i in range(len(images))]
    storage = {
        "raw_224": 224 * 224,
        "npz_224": len(encode_image_chunk(keys, images, 224)) / len(images),
        "png_224": float(np.mean([png_bytes(a) for a in images])),
        "npz_112": len(encode_image_chunk(keys, small, 112)) / len(images),
        "png_112": float(np.mean([png_bytes(a) for a in small])),
    }
    print(f"{total} MOSES molecules, {args.rounds} interleaved rounds, one process")
    print(f"{'contender':<14} {'img/s wall':>11} {'img/s per CPU s':>16}")
    for k, v in rates.items():
        print(f"{k:<14} {v['per_wall_s']:>11.1f} {v['per_cpu_s']:>16.1f}")
    ratio = rates["depict_array"]["per_cpu_s"] / rates["depict_png"]["per_cpu_s"]
    print(f"preprocessing costs: depict_array / depict_png per CPU s = {ratio:.2f}x")
    print("bytes per image: " + ", ".join(f"{k} {v:,.0f}" for k, v in storage.items()))
    print(
        f"npz_224 is {storage['raw_224'] / storage['npz_224']:.1f}x smaller than raw, "
        f"{storage['png_224'] / storage['npz_224']:.2f}x PNG's size"
    )
    print(json.dumps({"molecules": total, "rates": rates, "array_vs_png_ratio": ratio, "bytes": storage}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
