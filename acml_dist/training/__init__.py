"""ACML training on DeepSpeed, one component per module (the shape of torchtitan's train.py + components/):

    trainer.py      `Trainer` (build, train_step, evaluate, state_dict / load_state_dict, fit, finish), `run`
    distributed.py  joining torch.distributed through DeepSpeed, decisions and unions over ranks
    ds_config.py    the DeepSpeed config from the Hydra `trainer` section, parameter groups, the engine
    checkpoint.py   checkpoints (client state + per-rank RNG, weights-only loads) and the NaN/Inf guard
    metrics.py      in-batch and held-out retrieval top-1, the loss / throughput window, the loss curve, the
                    end-of-run table

`acml_dist/train.py` is the `deepspeed` entry point. Nothing here imports Ray, MLflow or RDKit: a GPU node
with torch, PyG, DeepSpeed, numpy and Hydra runs it (MLflow loads in `tracking` when a run is tracked).
"""

from acml_dist.training.trainer import Trainer, run

__all__ = ["Trainer", "run"]
