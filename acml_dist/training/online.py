"""The teachers a training job runs itself: each teacher's dim (its cache manifest, or the loaded online
teacher), the inputs loader workers make for the online ones (their tokenisers), and their embeddings made
on the training device after `batch.to(device)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from acml_dist.data.shards import cache_manifest


def teacher_dims(cfg: Any, root: Path) -> tuple[dict[str, int], dict[str, Any]]:
    """Dims of every teacher (cache manifest, or the online teacher itself) and the loaded online teachers."""
    dims, online = {}, {}
    for name, tcfg in cfg.teachers.items():
        if tcfg.source == "online":
            from acml_dist.context import use_tracking_store
            from acml_dist.teachers import load_teacher  # a teacher model: loaded only when one runs online
            from acml_dist.teachers.registry import teacher_store

            if store := teacher_store(cfg, tcfg):  # a `models:/` teacher: from the job's store
                use_tracking_store(store)
            online[name] = load_teacher(name, tcfg)
            dims[name] = int(online[name].dim)
        else:
            dims[name] = int(cache_manifest(root, name)["dim"])
    return dims, online


def online_inputs(online: dict[str, Any]) -> dict[str, Any]:
    """What the loader's workers make for the online teachers (their tokenisers)."""
    return {n: fn for n, t in online.items() if (fn := t.input_fn()) is not None}


def fill_online(batch: Any, online: dict[str, Any]) -> None:
    """Embeddings of the teachers that run online (not cached) for this batch, every row present. Call it
    after `batch.to(device)`: from worker-made inputs the embedding stays on the device (no host sync)."""
    for name, teacher in online.items():
        if name in batch.inputs:
            emb = teacher.encode_inputs(batch.inputs[name])
        else:
            emb = teacher.encode_smiles(batch.smiles)
        device = batch.graph.x.device
        batch.embeddings[name] = emb.to(device, non_blocking=True)
        batch.masks[name] = torch.ones(len(batch), dtype=torch.bool, device=device)
