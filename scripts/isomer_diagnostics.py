"""Where does a sparse modality's isomer discrimination fall short? (EVALUATION.md, "More predicted spectra")

    python scripts/isomer_diagnostics.py runs/mm100k/train6kmb25/model shards/mm100k --modality nmr13c \
        --teachers rxnfp morgan nmr13c nmr1h

On the molecules of `--split` that have `--modality`, in isomer sets of 2-10 (as `acml evaluate`):
1. the data: the top-1 a data-only oracle reaches when molecules whose stored arrays are identical (spectra
   also after merging bins, coarser resolutions) cannot be told apart, ties broken at random;
2. each teacher's geometry: how often a molecule's nearest isomer, in the teacher's projected space, is
   closer than 99% of random pairs (a teacher that crowds isomers together caps what the graph can do);
3. graph -> teacher top-1 for each teacher on exactly these molecules;
4. with `--reference MODEL TEACHER` (repeatable), the same for another model: the authors' protocol trains
   one ACML model per modality, so a SMILES-only model's graph -> rxnfp on these molecules is the figure a
   13C-only model is compared with.
Reads the model's teachers from the dataset's embedding cache (`acml embed`). Last line: one JSON object."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np


def oracle_top1(arrays: list[np.ndarray], sets: list[list[int]], merge: int) -> float:
    """Top-1 when arrays equal after merging `merge` neighbouring bins are indistinguishable."""
    scores = []
    for g in sets:
        sig = []
        for i in g:
            a = arrays[i]
            if a.ndim == 1 and merge > 1 and a.size % merge == 0:
                a = a.reshape(-1, merge).max(1)
            sig.append(a.tobytes())
        scores += [1.0 / sig.count(s) for s in sig]
    return float(np.mean(scores))


def crowded_fraction(emb: np.ndarray, sets: list[list[int]], seed: int = 0) -> float:
    """Fraction of molecules whose nearest isomer is closer (cosine) than 99% of random pairs."""
    t = emb.astype(np.float64)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    near = np.array([max(t[i] @ t[j] for j in g if j != i) for g in sets for i in g])
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(t), 20000), rng.integers(0, len(t), 20000)
    rand = np.sort((t[a] * t[b]).sum(1)[a != b])
    return float((near > rand[int(0.99 * len(rand))]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("shards")
    ap.add_argument("--modality", default="nmr13c", help="the sparse modality (a modalities/<name> output)")
    ap.add_argument("--teachers", nargs="+", default=["rxnfp", "nmr13c"], help="teachers of the model")
    ap.add_argument("--split", default="test")
    ap.add_argument("--merges", nargs="+", type=int, default=[1, 10, 20, 40], help="bins merged")
    ap.add_argument("--reference", nargs=2, action="append", default=[], metavar=("MODEL", "TEACHER"),
                    help="another model and one of its teachers, scored on the same molecules")  # fmt: skip
    args = ap.parse_args(argv)
    from acml_dist.data.modalities import ModalityLookup
    from acml_dist.evaluate.isomers import isomer_groups, top1_in_sets
    from acml_dist.evaluate.run import collect
    from acml_dist.models.io import load_model

    teachers = list(dict.fromkeys([*args.teachers, args.modality]))
    data = collect(load_model(args.model), args.shards, SimpleNamespace(split=args.split, max_molecules=0),
                   teachers, baseline=False)  # fmt: skip
    sel = data[f"mask:{args.modality}"].astype(bool)
    formulas = [f for f, s in zip(data["formula"], sel) if s]
    sets = [g.tolist() for g in isomer_groups(formulas) if len(g) <= 10]  # sets of 2-10, as evaluate
    look = ModalityLookup(args.shards, args.modality, keep=64)
    smiles = [s for s, keep in zip(data["smiles"], sel) if keep]
    keys = _keys_by_smiles(args.shards, args.split)
    arrays = [look.get(keys[s]) for s in smiles]
    out: dict = {"modality": args.modality, "molecules": int(sel.sum()), "in_sets": sum(map(len, sets)),
                 "sets": len(sets), "oracle_top1": {}, "crowded": {}, "graph_top1": {}}  # fmt: skip
    for m in args.merges:
        out["oracle_top1"][m] = oracle_top1(arrays, sets, m)
    for name in teachers:
        out["crowded"][name] = crowded_fraction(data[f"t:{name}"][sel], sets)
        graph, teacher = data[f"g:{name}"][sel], data[f"t:{name}"][sel]
        out["graph_top1"][name] = top1_in_sets(graph, teacher, formulas)["top1"]
    for path, name in args.reference:
        ref = collect(load_model(path), args.shards, SimpleNamespace(split=args.split, max_molecules=0),
                      [name], baseline=False)  # fmt: skip
        if ref["smiles"] != data["smiles"]:
            raise SystemExit(f"{path}: collected other molecules than {args.model}")
        graph, teacher = ref[f"g:{name}"][sel], ref[f"t:{name}"][sel]
        out["graph_top1"][f"{path}:{name}"] = top1_in_sets(graph, teacher, formulas)["top1"]
    print(f"{out['molecules']} molecules with {args.modality}; {out['in_sets']} in {out['sets']} isomer sets")
    for m, v in out["oracle_top1"].items():
        print(f"  data-only oracle top-1, {m} bins merged: {v:.3f}")
    print(f"  {'teacher':10s} {'nearest isomer within random top 1%':>36s} {'graph->teacher top-1':>22s}")
    for name in teachers:
        print(f"  {name:10s} {out['crowded'][name]:36.3f} {out['graph_top1'][name]:22.3f}")
    for path, name in args.reference:
        print(f"  {name} of {path}: graph -> teacher top-1 {out['graph_top1'][f'{path}:{name}']:.3f}")
    print(json.dumps(out))
    return 0


def _keys_by_smiles(root: str, split: str) -> dict[str, str]:
    from acml_dist.data.modalities import iter_dataset_molecules

    return {m["smiles"]: m["key"] for m in iter_dataset_molecules(root, [split])}


if __name__ == "__main__":
    raise SystemExit(main())
