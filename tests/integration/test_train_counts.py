"""The counts a run used to leave in its logs reach its result (issue 16): a shard skipped under
`trainer.on_bad_shard=skip` by a loader worker process of any rank, and the non-finite steps skipped, are in
`train_result.json`, the MLflow run and the table the command prints. Two DeepSpeed ranks over gloo, one
loader worker each, three epochs over tiny shards with one shard corrupted and one teacher embedding +inf
(a teacher that overflowed float16 for one molecule: the batch holding it has a non-finite loss)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, free_port, rank_env, tiny_train_overrides

from acml_dist.data.shards import atomic_write, encode_cache_shard, write_json

pytestmark = pytest.mark.integration


def _inf_embedding(root: Path, shard: str) -> None:
    """The morgan cache rewritten in float16 (as a neural teacher's is), one present row of `shard` +inf."""
    cache = root / "embeddings" / "morgan"
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["encoding"] = "float16"
    for split in manifest["splits"].values():
        for entry in split["shards"]:
            with np.load(cache / entry["name"]) as npz:
                arrays = dict(npz)
            emb = np.unpackbits(arrays["bits"], axis=1, count=manifest["dim"]).astype(np.float16)
            if entry["name"] == shard:
                emb[np.flatnonzero(arrays["present"])[0]] = np.inf
            keys = (arrays["key@data"], arrays["key@ptr"])
            data = encode_cache_shard(keys, emb, arrays["present"], bits=False)
            atomic_write(cache / entry["name"], data)
            entry["sha256"] = hashlib.sha256(data).hexdigest()
    write_json(cache / "manifest.json", manifest)


def test_skipped_shard_in_loader_workers_reaches_result_mlflow_and_table(tiny_shards, tmp_path, mlflow_store):
    shards = tmp_path / "ds"
    shutil.copytree(tiny_shards, shards)  # the session's shards stay intact for the other tests
    bad = shards / "train" / "shard-000001.npz"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: sha256 differs from the manifest
    bad.write_bytes(bytes(data))
    _inf_embedding(shards, "train/shard-000003.npz")
    run = tmp_path / "run"
    overrides = [
        *tiny_train_overrides(shards, run, tmp_path),
        "trainer.num_workers=1",  # the skip happens in a worker process, not in the rank itself
        "trainer.on_bad_shard=skip",
        "trainer.max_steps=25",  # 9 steps an epoch (319 rows / 2 ranks x 16): three epochs meet the shard
        "trainer.warmup_steps=1",
        "trainer.log_every=5",
    ]
    port, procs = free_port(), []
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.log", "w") as out:
            procs.append(subprocess.Popen([sys.executable, str(REPO / "acml_dist/train.py"), *overrides],
                                          env=rank_env(rank, 2, port), stdout=out, stderr=subprocess.STDOUT,
                                          cwd=REPO))  # fmt: skip
    codes = [p.wait(timeout=400) for p in procs]
    logs = [(tmp_path / f"rank{r}.log").read_text() for r in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + "\n----\n" + logs[1][-3000:]
    skips = sum(log.count("skipped (on_bad_shard=skip") for log in logs)
    assert skips >= 2, logs[0][-3000:]  # met in more than one epoch (and maybe by both ranks' workers)

    result = json.loads((run / "train_result.json").read_text())
    assert result["steps"] == 25 and result["world_size"] == 2
    assert result["skipped_shards"] == 1  # de-duplicated across epochs, workers and ranks
    assert result["skipped_shard_names"] == ["train/shard-000001.npz"]
    assert result["metrics"]["skipped_shards"] == 1
    warned = [log.count("non-finite loss, step skipped") for log in logs]  # loss averaged over ranks
    bad_steps = warned[0]
    assert bad_steps >= 1 and result["bad_steps"] == bad_steps == warned[1]  # both ranks skipped them
    table = logs[0][logs[0].index("metric ") :]
    assert re.search(r"^skipped_shards +1$", table, re.M)
    assert re.search(rf"^bad_steps +{bad_steps}$", table, re.M)
    assert re.search(r"^skipped_shard_names +train/shard-000001\.npz$", table, re.M), table

    from mlflow import MlflowClient

    logged = MlflowClient(mlflow_store).get_run(result["run_id"]).data
    assert logged.metrics["final_skipped_shards"] == 1 and logged.metrics["final_bad_steps"] == bad_steps
    assert logged.params["skipped_shard_names"] == "1: train/shard-000001.npz"
