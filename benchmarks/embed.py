"""Teacher inference and embedding-cache benchmark; ends with one JSON line.

    python benchmarks/embed.py --quick          # < 1 minute: batched inference rates, cache join cost
    python benchmarks/embed.py --molecules 100000 [--name moses100k]   # the full cache run + sanity check

Rates drift with machine load: compare the ratios printed by one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _test_dataset_writer() -> Any:
    """tests/helpers.py's `write_dataset`: SMILES -> packed shards in-process (no Ray), as in the tests."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import write_dataset

    return write_dataset


def _rate(fn: Any, n: int, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def quick(n_mol: int = 256) -> dict[str, Any]:
    import numpy as np
    import torch

    from acml_dist.config.teachers import TeacherConfig
    from acml_dist.data.datasets import moses_smiles
    from acml_dist.data.shards import (
        atomic_write,
        cache_dir,
        cache_manifest_body,
        dataset_manifest,
        encode_cache_shard,
        load_cache_shard,
        load_graph_shard,
        write_json,
    )
    from acml_dist.teachers import load_teacher
    from acml_dist.teachers.cache import embed_shard

    write_dataset = _test_dataset_writer()
    torch.set_num_threads(int(os.environ.get("ACML_BENCH_THREADS", "1")))
    smiles = moses_smiles(n_mol)
    rx = load_teacher("rxnfp", TeacherConfig(kind="smiles_lm", batch_size=128))
    fp = load_teacher("morgan", TeacherConfig(kind="fingerprint", modality="fingerprint"))
    samples = [{"smiles": s} for s in smiles]
    rx.encode_samples(samples[:16])  # warm-up
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    rx_emb = rx.encode_samples(samples).numpy()
    out["rxnfp_batched_mol_s"] = round(len(samples) / (time.perf_counter() - t0), 1)
    rx.batch_size = 1
    out["rxnfp_batch1_mol_s"] = round(_rate(lambda: rx.encode_samples(samples[:8]), 8), 1)
    rx.batch_size = 128
    # Intra-op threads: on a shared box one thread per actor can beat two (spinning threads contend).
    for n in (1, 2):
        torch.set_num_threads(n)
        out[f"rxnfp_threads{n}_mol_s"] = round(_rate(lambda: rx.encode_samples(samples[:64]), 64), 1)
    torch.set_num_threads(int(os.environ.get("ACML_BENCH_THREADS", "1")))
    out["rxnfp_batching_speedup"] = round(out["rxnfp_batched_mol_s"] / out["rxnfp_batch1_mol_s"], 2)
    out["fingerprint_mol_s"] = round(_rate(lambda: fp.encode_samples(samples), len(samples), 3), 1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        per_shard = 64
        write_dataset(root, {"train": smiles}, samples_per_shard=per_shard)
        shards = dataset_manifest(root)["splits"]["train"]["shards"]
        recs: dict[str, dict[str, Any]] = {fp.name: {}, rx.name: {}}
        for n, e in enumerate(shards):
            recs[fp.name][e["name"]] = embed_shard(fp, root, e, cache_dir(root, fp.name) / e["name"])
            emb = rx_emb[n * per_shard : (n + 1) * per_shard]  # same molecules, same order: no second pass
            data = encode_cache_shard(
                load_graph_shard(root, e).blobs["key"], emb, np.ones(len(emb), bool), bits=False
            )
            atomic_write(cache_dir(root, rx.name) / e["name"], data)
            recs[rx.name][e["name"]] = {"samples": len(emb), "sha256": hashlib.sha256(data).hexdigest()}
        for t in (rx, fp):  # what the training reader reads: dim, hash, entries aligned with graph shards
            entries = [
                {**recs[t.name][e["name"]], "name": e["name"], "graph_sha256": e["sha256"]} for e in shards
            ]
            body = cache_manifest_body(root, t.describe(), t is fp, {"train": {"shards": entries}})
            write_json(cache_dir(root, t.name) / "manifest.json", body)

        def graphs_only() -> None:
            for e in shards:
                load_graph_shard(root, e)

        def graphs_joined() -> None:
            for e in shards:
                packed = load_graph_shard(root, e)
                for t in (rx, fp):
                    entry = {**recs[t.name][e["name"]], "name": e["name"], "graph_sha256": e["sha256"]}
                    load_cache_shard(root, t.name, entry, e, packed.blobs["key"])

        graphs_only()
        g = _rate(graphs_only, len(smiles), 3)
        j = _rate(graphs_joined, len(smiles), 3)
        out["graph_read_mol_s"] = round(g, 1)
        out["graph_plus_2_caches_mol_s"] = round(j, 1)
        out["cache_join_cost_ratio"] = round(g / j, 2)  # >1: joining slows reading by this factor
        out["cache_bytes_per_mol"] = {
            t.name: round(
                sum(f.stat().st_size for f in (cache_dir(root, t.name) / "train").glob("*.npz")) / n_mol
            )
            for t in (rx, fp)
        }
        try:  # the shared training reader, once it joins caches
            from acml_dist.data.loader import make_loader

            def loader(teachers: tuple[str, ...]) -> None:
                for _ in make_loader(str(root), "train", 128, teachers=teachers):
                    pass

            lg = _rate(lambda: loader(()), len(smiles), 2)
            lj = _rate(lambda: loader(("rxnfp", "morgan")), len(smiles), 2)
            out["make_loader_mol_s"] = round(lg, 1)
            out["make_loader_joined_mol_s"] = round(lj, 1)
            out["make_loader_join_cost_ratio"] = round(lg / lj, 2)
        except Exception as exc:  # not there yet, or no cache support yet: say so in the JSON
            out["make_loader"] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    out["molecules"] = n_mol
    return out


def full(n_mol: int, name: str, shards_root: str, actors: int) -> dict[str, Any]:
    from acml_dist.config import load_config
    from acml_dist.data.datasets import moses_smiles
    from acml_dist.teachers.cache import embed_dataset
    from acml_dist.teachers.sanity import teacher_sanity

    write_dataset = _test_dataset_writer()
    root = Path(shards_root) / name
    t0 = time.time()
    if not (root / "manifest.json").exists():
        smiles = moses_smiles(n_mol)
        cut = int(0.9 * len(smiles))
        write_dataset(root, {"train": smiles[:cut], "test": smiles[cut:]}, samples_per_shard=1000)
    prep_s = time.time() - t0
    cfg = load_config(
        "embed",
        [
            f"name={name}",
            f"shards_root={shards_root}",
            "teachers=smiles_fp",
            f"cluster.embed_actors={actors}",
        ],
    )
    summary = embed_dataset(cfg)
    out: dict[str, Any] = {"molecules": n_mol, "dataset_prep_s": round(prep_s, 1)}
    for t, m in summary["teachers"].items():
        out[t] = {k: m[k] for k in ("elapsed_s", "startup_s", "rate_per_s", "embedded_now", "dim", "actors")}
        out[t]["sanity"] = teacher_sanity(root, t, "test", n=5000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--molecules", type=int, default=100_000)
    ap.add_argument("--name", default="moses100k")
    ap.add_argument("--shards-root", default="shards")
    ap.add_argument("--actors", type=int, default=1)
    args = ap.parse_args()
    t0 = time.time()
    result = quick() if args.quick else full(args.molecules, args.name, args.shards_root, args.actors)
    result["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps({"benchmark": "embed", "mode": "quick" if args.quick else "full", **result}))


if __name__ == "__main__":
    main()
