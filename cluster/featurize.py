"""Featurise a corpus on a Ray cluster (or embedded local Ray):

    ray job submit --address http://HEAD:8265 --working-dir . -- python cluster/featurize.py \
        input=/data/pubchem/CID-SMILES.gz name=pubchem cluster.address=auto
    python cluster/featurize.py data=moses name=moses          # local Ray, all cores

Arguments are Hydra overrides of configs/featurize.yaml; same function as `acml featurize`."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    # The CLI's own entry: same config handling, `--cfg job`, and one-line input errors (exit 2).
    from acml_dist.cli import main as acml

    return acml(["featurize", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
