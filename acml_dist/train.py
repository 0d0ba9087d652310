"""ACML training on DeepSpeed: the `deepspeed` / `python` entry point of `acml_dist.training`.

    deepspeed --num_gpus N acml_dist/train.py <hydra overrides>      # --cfg job: print the config, exit
    python acml_dist/train.py <hydra overrides>                     # one process (world size 1)

`run(cfg)` (Ray Train workers, tests, `acml train`) is `acml_dist.training.trainer.run`: torch.distributed
is joined if already initialised (Ray Train), else initialised from the launcher's env (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), else as a world of one. The trainer writes `<output>/train_result.json` on rank 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from acml_dist.errors import run_main


def run(cfg: Any) -> dict[str, Any]:
    """Train the GIN + heads on cfg.shards (or <shards_root>/<name>); returns metrics, model_dir, run_id."""
    from acml_dist.training.trainer import run as train  # torch, PyG and DeepSpeed load here

    return train(cfg)


def main(argv: Optional[list[str]] = None) -> int:
    """`deepspeed acml_dist/train.py <overrides>`: strips the launcher's --local_rank, `--cfg job` prints.
    A wrong config or input gives one line per rank and exit 2, as the CLI does (ACML_DEBUG=1: traceback)."""
    return run_main(f"[rank {os.environ.get('RANK', 0)}] acml train", lambda: _main(argv))


def _main(argv: Optional[list[str]]) -> int:
    from acml_dist.config import load_config, to_yaml

    args = list(sys.argv[1:] if argv is None else argv)
    overrides, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(("--local_rank", "--local-rank")):
            i += 1 if "=" in arg else 2
            continue
        overrides.append(arg)
        i += 1
    show = "--cfg" in overrides
    if show:
        at = overrides.index("--cfg")
        del overrides[at : at + 2]
    config_file = None
    if "--config-file" in overrides:  # a resolved train config written by the pipeline's deepspeed launch
        at = overrides.index("--config-file")
        config_file = overrides[at + 1]
        del overrides[at : at + 2]
    if config_file:
        from omegaconf import OmegaConf

        from acml_dist.config import validate

        raw = OmegaConf.merge(OmegaConf.load(config_file), OmegaConf.from_dotlist(overrides))
        cfg = validate("train", raw)
    else:
        cfg = load_config("train", overrides)
    if show:
        print(to_yaml(cfg))
        return 0
    result = run(cfg)
    if result.get("model_dir"):  # rank 0
        print(json.dumps({k: v for k, v in result.items() if k != "metrics"}, default=str))
    return 0


if __name__ == "__main__":
    # As a script, this folder is sys.path[0]: its module names (data, config, ...) must not shadow others.
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    code = main()
    # A finished rank leaves at once: in interpreter teardown gloo's background threads can die with
    # "terminate called without an active exception" (SIGABRT) after all work is done, which the
    # launcher would report as a failed rank. Everything is written and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
