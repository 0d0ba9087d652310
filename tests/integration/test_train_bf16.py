"""bf16 training on CPU with the GIN's BatchNorm (issue 16): `trainer.precision=bf16` used to stop at the
first forward ("expected scalar type BFloat16 but found Float": DeepSpeed's bf16 keeps BatchNorm's running
statistics fp32, which torch's CPU batch_norm refuses). A real DeepSpeed rank over gloo trains the same run
in fp32 and in bf16: both finish, the bf16 loss curve follows the fp32 one, and the saved model (fp32
running statistics that moved) loads in a fresh fp32 model and embeds molecules. Speed is measured in
`benchmarks/train_step.py --bf16`, not here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO, free_port, rank_env, tiny_train_overrides

pytestmark = pytest.mark.integration
STEPS = 30


def _train(shards, tmp_path, precision: str) -> list[dict]:
    run = tmp_path / precision
    overrides = [
        *tiny_train_overrides(shards, run, tmp_path),
        f"trainer.precision={precision}",
        f"trainer.max_steps={STEPS}",
        "trainer.warmup_steps=2",
        "trainer.lr=3e-3",
        "trainer.log_every=5",
        "tracking.enabled=false",
    ]
    done = subprocess.run([sys.executable, str(REPO / "acml_dist/train.py"), *overrides],
                          env=rank_env(0, 1, free_port()), cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == STEPS
    return json.loads((run / "history.json").read_text())


def test_bf16_trains_the_gin_on_cpu_like_fp32(tiny_shards, tmp_path):
    fp32 = [h["loss"] for h in _train(tiny_shards, tmp_path, "fp32")]
    bf16 = [h["loss"] for h in _train(tiny_shards, tmp_path, "bf16")]
    assert len(bf16) == STEPS and all(v == v for v in bf16)  # every step, finite
    first, last = sum(bf16[:5]) / 5, sum(bf16[-5:]) / 5
    assert last < first - 0.5, bf16  # it learns
    assert abs(last - sum(fp32[-5:]) / 5) < 0.15 * first, (fp32, bf16)  # as fp32 does, within bf16's noise

    import torch
    from safetensors.torch import load_file

    from acml_dist.models.io import load_model
    from acml_dist.tracking import embed_smiles

    state = load_file(str(tmp_path / "bf16" / "model" / "model.safetensors"))
    assert state["gin.convs.0.mlp.0.weight"].dtype == torch.bfloat16  # it did train in bf16
    mean = state["gin.norms.0.running_mean"]
    assert mean.dtype == torch.float32 and mean.abs().sum() > 0  # fp32 statistics, updated
    model = load_model(tmp_path / "bf16" / "model")  # a fresh fp32 model takes the bf16 weights
    emb = embed_smiles(model, ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"])
    assert emb.shape[0] == 3 and bool(torch.isfinite(torch.as_tensor(emb)).all())
