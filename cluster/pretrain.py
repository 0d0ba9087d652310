"""The Ray job: the whole ACML pipeline (featurise -> embed -> train -> evaluate -> register).

    ray job submit --address http://HEAD:8265 --working-dir . -- python cluster/pretrain.py <overrides>
    python cluster/pretrain.py <overrides>        # no running head: embedded local Ray, file-based MLflow

The same as `acml pipeline <overrides>` (configs/pretrain.yaml), through the CLI's own entry. `--cfg job`
prints the resolved configuration. Exit status: 0 on success, 1 when a stage fails (named in the message),
2 on a configuration or input error.
"""

from __future__ import annotations

import sys
from pathlib import Path

# With `--working-dir .` the job runs from a copy of the checkout: make its package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acml_dist.cli import main as acml  # noqa: E402


def main(argv: list[str]) -> int:
    return acml(["pipeline", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
