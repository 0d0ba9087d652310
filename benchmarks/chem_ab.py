"""Before/after of the chemistry hot path in one run: acml_dist/chem of a git ref (default `main`) against
the working tree, rounds interleaved (A B, B A, ...) so load changes hit both alike; per round the time
ratio, the median over rounds printed.

    python benchmarks/chem_ab.py                  # main vs working tree, MOSES and NCI, 4,000 SMILES each
    python benchmarks/chem_ab.py --base HEAD~3 --molecules 2000 --rounds 6

Contenders: `smiles_to_graphs` (parse + both graph schemas, one batch) and standardise + graph (what a
featurisation chunk does per molecule before encoding). Last line: one JSON object of the median ratios
(after / before rate; < 1 means the working tree is slower)."""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ("parse", "featurize", "standardize")


def load_base(ref: str) -> tuple:
    """The chem modules of `ref` as package `base_chem` (their acml_dist.chem imports redirected)."""
    root = Path(tempfile.mkdtemp(prefix="chem-ab-"))
    (root / "base_chem").mkdir()
    (root / "base_chem" / "__init__.py").write_text("")
    for name in MODULES:
        text = subprocess.run(
            ["git", "show", f"{ref}:acml_dist/chem/{name}.py"], cwd=REPO, check=True, capture_output=True
        ).stdout.decode()
        (root / "base_chem" / f"{name}.py").write_text(text.replace("acml_dist.chem.", "base_chem."))
    sys.path.insert(0, str(root))
    return importlib.import_module("base_chem.featurize"), importlib.import_module("base_chem.standardize")


def std_graph(featurize, standardize, cfg):
    def run(smiles: list[str]) -> None:
        results = [standardize.standardize(s, cfg) for s in smiles]
        ok = [r for r in results if isinstance(r, standardize.StandardResult)]
        featurize.mols_to_graphs([r.mol for r in ok], [r.hint for r in ok])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--molecules", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from featurize import corpus_smiles

    from acml_dist.chem import featurize as new_f
    from acml_dist.chem import standardize as new_s
    from acml_dist.config.data import StandardizeConfig

    old_f, old_s = load_base(args.base)
    cfg = StandardizeConfig()
    summary = {}
    for corpus in ("moses", "nci5k"):
        smiles = corpus_smiles(corpus, args.molecules)
        pairs = {
            "graph": (old_f.smiles_to_graphs, new_f.smiles_to_graphs),
            "standardize_graph": (std_graph(old_f, old_s, cfg), std_graph(new_f, new_s, cfg)),
        }
        for name, (before, after) in pairs.items():
            ratios = []
            for r in range(args.rounds):
                took = {}
                for key, fn in [("before", before), ("after", after)][:: 1 if r % 2 == 0 else -1]:
                    t0 = time.perf_counter()
                    fn(smiles)
                    took[key] = time.perf_counter() - t0
                ratios.append(took["before"] / took["after"])
            summary[f"{corpus}_{name}"] = round(statistics.median(ratios), 3)
            print(
                f"{corpus:6s} {name:18s} after/before rate: median {statistics.median(ratios):.3f} "
                f"(rounds {min(ratios):.3f}..{max(ratios):.3f})",
                flush=True,
            )
    print(json.dumps({"base": args.base, **summary}))


if __name__ == "__main__":
    main()
