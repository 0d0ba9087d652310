"""The trainer's state (issue 13): `state_dict()` carries the step, the data position, the bad-step counters,
the skipped shards, the loss history and this rank's RNG; `load_state_dict()` on a fresh trainer continues
all of them."""

from __future__ import annotations

import random

import numpy as np
import torch


def test_state_dict_round_trip_continues_position_counters_and_rng(tmp_path):
    from acml_dist.config import load_config
    from acml_dist.training import Trainer

    cfg = load_config("train", [f"runs_root={tmp_path}", "trainer.max_bad_steps=5"])
    first = Trainer(cfg)
    first.step, first.epoch, first.micro = 12, 3, 7
    first.history = [{"step": 12, "loss": 1.5}]
    first.guard.check(False, 12)
    first.guard.check(False, 13)
    first.skipped_before = ["train/shard-000003.npz"]  # as a resumed run that had skipped one
    state = first.state_dict()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    torch.manual_seed(99), np.random.seed(99), random.seed(99)  # a fresh process would start elsewhere
    second = Trainer(cfg)
    second.load_state_dict(state)
    assert (second.step, second.epoch, second.micro) == (12, 3, 7)
    assert (second.guard.in_a_row, second.guard.total) == (2, 2)
    assert second.skipped_shards() == ["train/shard-000003.npz"]
    assert second.history == [{"step": 12, "loss": 1.5}]
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert second.ctx.run_dir == tmp_path / "demo" and second.ckpt_dir == tmp_path / "demo" / "checkpoints"
