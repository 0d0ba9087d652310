"""Evaluation benchmarks, ratios measured within one run:

1. chunked retrieval (memory O(chunk x pool)) against one dense score matrix: time ratio, peak score-block
   bytes, identical ranks;
2. one fine-tuning epoch (5-layer GIN width 64 + MLP head, batch 64) with 1 vs 2 torch threads, which is
   why `eval.num_threads` defaults to 1;
3. a dataset's fine-tuning fits (width 300, the recipe's from-scratch baseline) one after another in this
   process against side by side in `eval.workers` processes: wall-time ratio, and whether the scores match.

Ends with one JSON line. `--quick` for a smaller run."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def bench_retrieval(n: int, dim: int, chunk: int) -> dict:
    from acml_dist.evaluate.retrieval import retrieval_ranks

    rng = np.random.default_rng(0)
    q = rng.normal(size=(n, dim)).astype(np.float32)
    k = (q + rng.normal(size=(n, dim))).astype(np.float32)
    t0 = time.perf_counter()
    chunked = retrieval_ranks(q, k, 0, chunk=chunk)
    t1 = time.perf_counter()
    dense = retrieval_ranks(q, k, 0, chunk=n)
    t2 = time.perf_counter()
    return {
        "molecules": n,
        "chunk": chunk,
        "chunked_s": round(t1 - t0, 3),
        "dense_s": round(t2 - t1, 3),
        "chunked_over_dense_time": round((t1 - t0) / (t2 - t1), 3),
        "chunked_block_mb": round(chunk * n * 4 / 2**20, 1),
        "dense_block_mb": round(n * n * 4 / 2**20, 1),
        "ranks_identical": bool((chunked == dense).all()),
    }


def _graphs(n: int):
    from rdkit import Chem, RDConfig

    from acml_dist.chem.featurize import mol_to_graph
    from acml_dist.data.loader import graph_from_npz

    path = f"{RDConfig.RDDataDir}/NCI/first_5K.smi"
    out = []
    for line in open(path):
        mol = Chem.MolFromSmiles(line.split()[0])
        if mol is not None and mol.GetNumAtoms() > 1:
            out.append(graph_from_npz(mol_to_graph(mol), "hu"))
        if len(out) == n:
            break
    return out


def bench_threads(n: int) -> dict:
    import torch
    from torch_geometric.loader import DataLoader

    from acml_dist.evaluate.finetuning import build_predictor
    from acml_dist.models.gin import GIN

    graphs = _graphs(n)
    for g in graphs:
        g.y = torch.zeros(1, 1)
    rates = {}
    for threads in (1, 2, 1):  # 1 twice: the second shows the drift within the run
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = build_predictor(GIN(emb_dim=64), 64, 1)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for batch in DataLoader(graphs, batch_size=64, shuffle=True):
            loss = ((model(batch) - batch.y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        rates.setdefault(threads, []).append(n / (time.perf_counter() - t0))
    one = float(np.mean(rates[1]))
    return {
        "molecules": n,
        "mol_per_s_1_thread": round(one, 1),
        "mol_per_s_2_threads": round(rates[2][0], 1),
        "two_over_one_threads": round(rates[2][0] / one, 3),
    }


def bench_workers(n: int, fits: int, epochs: int) -> dict:
    from omegaconf import OmegaConf

    from acml_dist.config.eval import EvalConfig
    from acml_dist.evaluate.finetuning import LabelledSet
    from acml_dist.evaluate.fits import FitJob, fit_workers, run_fits
    from acml_dist.evaluate.properties import EncoderView, fresh_like
    from acml_dist.evaluate.run import cpu_threads
    from acml_dist.models import ACMLModel

    graphs = _graphs(n)
    y = np.array([[g.num_nodes] for g in graphs], dtype=float)  # any target: only the time is measured
    data = LabelledSet("nci", "regression", ["atoms"], [""] * n, graphs, y)
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    split = (order[: n * 8 // 10], order[n * 8 // 10 : n * 9 // 10], order[n * 9 // 10 :])
    ecfg = OmegaConf.merge(OmegaConf.structured(EvalConfig), {"finetune_epochs": epochs, "progress": False})

    template = ACMLModel({"emb_dim": 300}, {"none": 8})

    def jobs() -> list:  # fresh, seeded encoders each time: a fit trains its encoder in place
        encoders = [EncoderView(fresh_like(template, s)) for s in range(fits)]
        return [FitJob(f"fit {s}", e, data, split, s, False) for s, e in enumerate(encoders)]

    t0 = time.perf_counter()
    with cpu_threads(1):
        serial = run_fits(jobs(), OmegaConf.merge(ecfg, {"workers": 1}))
    t1 = time.perf_counter()
    side_by_side = run_fits(jobs(), OmegaConf.merge(ecfg, {"workers": 0}))
    t2 = time.perf_counter()
    same = all(np.isclose(a.test["rmse"], b.test["rmse"], rtol=1e-5) for a, b in zip(serial, side_by_side))
    return {
        "fits": fits,
        "epochs": epochs,
        "molecules": n,
        "workers": fit_workers(0, fits, 1),
        "one_after_another_s": round(t1 - t0, 1),
        "side_by_side_s": round(t2 - t1, 1),
        "speedup": round((t1 - t0) / (t2 - t1), 2),
        "scores_identical": bool(same),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5000 if args.quick else 20000
    result = {
        "retrieval": bench_retrieval(n, 128, 1024),
        "finetune_threads": bench_threads(500 if args.quick else 2000),
        "finetune_workers": bench_workers(400 if args.quick else 1000, 4, 3 if args.quick else 5),
    }
    for name, values in result.items():
        print(name, values)
    print(json.dumps({"benchmark": "evaluate", **result}))


if __name__ == "__main__":
    main()
