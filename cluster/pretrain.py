"""The Ray job: the whole ACML pipeline (featurise -> embed -> train -> evaluate -> register).

    ray job submit --address http://HEAD:8265 --working-dir . -- python cluster/pretrain.py <overrides>
    python cluster/pretrain.py <overrides>        # no running head: embedded local Ray, file-based MLflow

`--cfg job` prints the resolved configuration. Exit status: 0 on success, 1 when a stage fails (named in the
message), 2 on a configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

# With `--working-dir .` the job runs from a copy of the checkout: make its package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acml_dist.config import ConfigError, load_config, to_yaml  # noqa: E402


def main(argv: list[str]) -> int:
    show = "--cfg" in argv
    overrides = [a for a in argv if a not in ("--cfg", "job")]
    try:
        cfg = load_config("pretrain", overrides)
    except ConfigError as exc:
        print(f"pretrain: {exc}", file=sys.stderr)
        return 2
    if show:
        print(to_yaml(cfg))
        return 0
    from acml_dist.pipeline import StageError, run_pipeline

    try:
        run_pipeline(cfg)
    except StageError as exc:
        print(f"pretrain: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
