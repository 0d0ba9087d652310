"""Does resetting the embedding rows the pretraining corpus never trained help fine-tuning? (measured,
not adopted: docs/finetune_recipe.md, "Feature values the corpus never shows")

The OGB schema embeds each atom and bond feature value. Values absent from MOSES (charged atoms such as
nitro groups, P / I / B, E/Z bond stereo) keep their random initialisation in the released encoder. This
script counts the values of a sample of the MOSES training file (every `--every`-th molecule), sets each
unseen row of the atom and bond tables to the row of that feature's commonest value (as `eval.chirality=zero`
does for the chirality tag), and fine-tunes the released encoder with the default recipe:

    OMP_NUM_THREADS=1 python benchmarks/unseen_rows.py photoswitch --mode reset   # or --mode keep

Prints one JSON line: the dataset, split, mode, per-seed test RMSE, their mean and std."""

from __future__ import annotations

import argparse
import copy
import gzip
import json
from collections import Counter

import numpy as np


def corpus_counts(every: int) -> tuple[list[Counter], list[Counter]]:
    """Per-column value counts of OGB atom and bond features over a sample of MOSES train."""
    from rdkit import Chem

    from acml_dist.chem.featurize import mol_to_graph
    from acml_dist.data.datasets import _site_file
    from acml_dist.data.loader import graph_from_npz

    atoms, bonds = [Counter() for _ in range(9)], [Counter() for _ in range(3)]
    with gzip.open(_site_file("moses", "dataset", "data", "train.csv.gz"), "rt") as fh:
        next(fh)
        for i, line in enumerate(fh):
            if i % every:
                continue
            graph = graph_from_npz(mol_to_graph(Chem.MolFromSmiles(line.split(",")[0])), "ogb")
            for c, counter in enumerate(atoms):
                counter.update(graph.x[:, c].tolist())
            for c, counter in enumerate(bonds):
                counter.update(graph.edge_attr[:, c].tolist())
    return atoms, bonds


def reset_unseen(table, counts: list[Counter]) -> int:
    """Rows of values never counted set to the commonest value's row; returns how many were reset."""
    import torch

    reset = 0
    with torch.no_grad():
        for emb, counter in zip(table.embeddings, counts):
            unseen = [r for r in range(emb.weight.shape[0]) if r not in counter]
            emb.weight[unseen] = emb.weight[counter.most_common(1)[0][0]].clone()
            reset += len(unseen)
    return reset


def main() -> None:
    import torch
    from omegaconf import OmegaConf

    from acml_dist.config.eval import EvalConfig
    from acml_dist.evaluate.chirality import prepare_encoder
    from acml_dist.evaluate.fits import FitJob, run_fits
    from acml_dist.evaluate.labelled import load_labelled_set
    from acml_dist.evaluate.properties import EncoderView
    from acml_dist.evaluate.run import _data_config
    from acml_dist.evaluate.splits import make_split
    from acml_dist.models.io import load_model

    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("--mode", choices=["keep", "reset"], default="reset")
    p.add_argument("--model", default="release/acml-gin-moses-1m")
    p.add_argument("--split", default="scaffold")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--every", type=int, default=40, help="MOSES sample: every n-th molecule")
    args = p.parse_args()

    torch.set_num_threads(1)
    model = load_model(args.model)
    reset = 0
    if args.mode == "reset":
        atoms, bonds = corpus_counts(args.every)
        gin = next(m for m in model.modules() if hasattr(m, "atom_encoder"))
        reset = reset_unseen(gin.atom_encoder, atoms)
        reset += sum(
            reset_unseen(m.edge_embedding, bonds) for m in model.modules() if hasattr(m, "edge_embedding")
        )
    model = prepare_encoder(model, "zero")
    data = load_labelled_set(
        OmegaConf.structured(_data_config(args.dataset, args.split)), args.dataset, "ogb"
    )
    ecfg = OmegaConf.merge(OmegaConf.structured(EvalConfig), {"progress": False, "workers": 1})
    jobs = [
        FitJob(f"{args.dataset} {args.mode} {seed}", EncoderView(copy.deepcopy(model)), data,
               make_split(data.smiles, args.split, [0.8, 0.1, 0.1], seed), seed, True)
        for seed in args.seeds
    ]  # fmt: skip
    rmse = [fit.test["rmse"] for fit in run_fits(jobs, ecfg)]
    print(json.dumps({"dataset": args.dataset, "split": args.split, "mode": args.mode, "rows_reset": reset,
                      "rmse": rmse, "mean": float(np.mean(rmse)), "std": float(np.std(rmse))}))  # fmt: skip


if __name__ == "__main__":
    main()
