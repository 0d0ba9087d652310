"""ACML training on DeepSpeed, one component per module (the shape of torchtitan's train.py + components/):

    trainer.py      `Trainer` (build, train_step, evaluate, state_dict / load_state_dict, fit, finish), `run`
    distributed.py  joining torch.distributed through DeepSpeed, decisions and unions over ranks
    ds_config.py    the DeepSpeed config from the Hydra `trainer` section, parameter groups, the engine
    checkpoint.py   checkpoints (client state + per-rank RNG, weights-only loads) and the NaN/Inf guard
    metrics.py      in-batch and held-out retrieval top-1, the loss / throughput window, the loss curve, the
                    end-of-run table

The teachers trained here (`acml pretrain-teacher`) train on the same DeepSpeed ranks:

    pair_training.py   their shared loop: split, data-parallel AdamW over batches, held-out R@1 vs the twin
    nmr_pretrain.py    the 13C / 1H / MS encoders, CReSS-style (CLIP against a frozen SMILES teacher)
    image_pretrain.py  the Img2Mol-style image CNN (regression + in-batch InfoNCE, online augmentation)
    teacher_job.py     the command: pairs, MLflow run, registration, the held-out table

`acml_dist/train.py` is the `deepspeed` entry point. Nothing here imports Ray, MLflow or RDKit: a GPU node
with torch, PyG, DeepSpeed, numpy and Hydra runs it (MLflow loads in `tracking` when a run is tracked).
"""

from acml_dist.training.trainer import Trainer, run

__all__ = ["Trainer", "run"]
