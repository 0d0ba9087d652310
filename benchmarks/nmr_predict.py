"""Predicted-NMR throughput per core (csp5), as ratios measured in one run.

    python benchmarks/nmr_predict.py --quick          # ~1-2 minutes
    python benchmarks/nmr_predict.py --molecules 200

One process, one torch thread, MOSES test molecules (drug-like, ~21 heavy atoms), rounds interleaved so
load changes hit every contender alike (rates per wall second and per CPU second of the process, the
latter being the per-core rate when other jobs share the cores): csp5 13C alone, 1H alone (each
embedding its own conformer), and `predict_nmr` with both nuclei on one conformer (what `acml nmr-predict`
runs); plus binning alone.
The model load (once per process) is timed apart. Last line: one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--molecules", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="40 molecules, 2 rounds")
    args = parser.parse_args(argv)
    n = 40 if args.quick else args.molecules

    import numpy as np
    import torch

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    from featurize import corpus_smiles

    from acml_dist.chem.spectra import bin_peaks, nmr13c_spec
    from acml_dist.data.nmr_predict import predict_nmr

    torch.set_num_threads(1)
    smiles = corpus_smiles("moses", n * args.rounds)
    t0 = time.perf_counter()
    predict_nmr(smiles[:1], ("13C", "1H"))  # loads both models (once per process / Ray worker)
    load_s = time.perf_counter() - t0
    contenders = {
        "c13_only": lambda xs: predict_nmr(xs, ("13C",)),
        "h1_only": lambda xs: predict_nmr(xs, ("1H",)),
        "both_one_conformer": lambda xs: predict_nmr(xs, ("13C", "1H")),
    }
    elapsed = dict.fromkeys(contenders, 0.0)
    cpu = dict.fromkeys(contenders, 0.0)  # CPU seconds of this process: the per-core rate on a busy machine
    rejects = dict.fromkeys(contenders, 0)
    for r in range(args.rounds):
        part = smiles[r * n : (r + 1) * n]
        for name, fn in contenders.items():
            t, c = time.perf_counter(), time.process_time()
            out = fn(part)
            elapsed[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
            rejects[name] += sum(1 for o in next(iter(out.values())) if not hasattr(o, "spectrum"))
    total = n * args.rounds
    rates = {k: total / v for k, v in elapsed.items()}
    cpu_rates = {k: total / v for k, v in cpu.items()}
    peaks = np.random.default_rng(0).uniform(0, 200, size=(2000, 20))
    t = time.perf_counter()
    for p in peaks:
        bin_peaks(p, None, nmr13c_spec())
    bin_rate = len(peaks) / (time.perf_counter() - t)
    print(f"molecules: {total} MOSES, 1 torch thread; model load {load_s:.1f} s (once per process)")
    for k, v in rates.items():
        print(
            f"  {k:22s} {v:7.2f} mol/s wall, {cpu_rates[k]:7.2f} mol/s per CPU-second   rejects {rejects[k]}"
        )
    print(f"  {'binning 13C (20 peaks)':22s} {bin_rate:9.0f} spectra/s")
    result = {
        "molecules": total,
        "model_load_s": round(load_s, 2),
        **{f"rate_{k}": round(v, 3) for k, v in rates.items()},
        **{f"cpu_rate_{k}": round(v, 3) for k, v in cpu_rates.items()},
        "both_vs_13c_only": round(rates["both_one_conformer"] / rates["c13_only"], 3),
        # both nuclei on one conformer vs 13C then 1H as two runs (each embedding its own conformers)
        "both_vs_two_separate_runs": round(
            rates["both_one_conformer"] * (1 / rates["c13_only"] + 1 / rates["h1_only"]), 3
        ),
        "binning_spectra_per_s": round(bin_rate),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
