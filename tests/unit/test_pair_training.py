"""The teachers' shared training loop (`acml_dist.training.pair_training`) on a DeepSpeed world of one
(gloo, in this process): split, equal batches (rows past the last whole batch wait for the next shuffle),
the schedule, the early stop, and the held-out report. Two ranks: integration/test_pretrain_teacher.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acml_dist.training.pair_training import FitOptions, fit_pairs, formula_groups, held_out_r1, split_pairs


def test_split_holds_out_a_seeded_fraction_and_refuses_too_few_to_train() -> None:
    train, val = split_pairs(10, 0.3, seed=4)
    assert len(val) == 3 and sorted([*train, *val]) == list(range(10))
    again = split_pairs(10, 0.3, seed=4)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    with pytest.raises(ValueError, match="fewer than 2 to train on"):
        split_pairs(3, 0.5, seed=0)


@pytest.mark.parametrize("one_cycle", [False, True])
def test_fit_learns_a_linear_map_in_whole_batches(one_cycle: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(33, 4)
    y = x @ torch.randn(4, 2)
    model = torch.nn.Linear(4, 2)
    calls: list[int] = []

    def batch_loss(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        calls.append(len(rows))
        return torch.nn.functional.mse_loss(model(x[rows]), y[rows])

    epochs: list[tuple[int, float]] = []
    fit = FitOptions(epochs=30, batch_size=8, lr=0.05, weight_decay=0.0, seed=1, device="cpu",
                     on_epoch=lambda e, v: epochs.append((e, v)))  # fmt: skip
    history, seen, stopped = fit_pairs(model, 33, batch_loss, fit, one_cycle=one_cycle)
    assert seen == 30 * 32 and set(calls) == {8} and not stopped  # 33 = 4 x 8 + 1: one row waits
    assert [e for e, _ in epochs] == list(range(30)) and [v for _, v in epochs] == history
    assert history[-1] < 0.1 * history[0]


def test_fit_stops_when_asked_and_refuses_batches_of_one() -> None:
    model = torch.nn.Linear(2, 1)
    x, y = torch.randn(12, 2), torch.randn(12, 1)
    steps: list[int] = []

    def batch_loss(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        steps.append(len(rows))
        return torch.nn.functional.mse_loss(model(x[rows]), y[rows])

    fit = FitOptions(epochs=5, batch_size=4, lr=0.01, weight_decay=0.0, seed=0, device="cpu")
    history, seen, stopped = fit_pairs(model, 12, batch_loss, fit, stop=lambda: len(steps) >= 7)
    assert stopped and len(steps) == 7 and seen == 28 and len(history) == 2  # 3 steps an epoch
    with pytest.raises(ValueError, match="a batch of 2"):
        fit_pairs(model, 1, batch_loss, FitOptions(epochs=1, batch_size=4))


@pytest.mark.parametrize("grouped", [True, False])
def test_groups_put_each_groups_rows_in_one_batch(grouped: bool) -> None:
    """With `groups` (here 12 groups of 2 rows, batches of 4), every batch is whole groups, in an order that
    changes per epoch, and every row is still seen once an epoch; without, random batches split groups."""
    groups = np.repeat(np.random.default_rng(3).permutation(12), 2)[np.random.default_rng(4).permutation(24)]
    model = torch.nn.Linear(1, 1)
    batches: list[list[int]] = []

    def batch_loss(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        batches.append(rows.tolist())
        return model(torch.ones(len(rows), 1)).pow(2).mean()

    fit = FitOptions(epochs=3, batch_size=4, lr=0.01, weight_decay=0.0, seed=0, device="cpu")
    fit_pairs(model, 24, batch_loss, fit, groups=groups if grouped else None)
    assert len(batches) == 18
    for epoch in range(3):
        assert sorted(r for b in batches[6 * epoch : 6 * epoch + 6] for r in b) == list(range(24))
    whole = [all((groups[b] == g).sum() == 2 for g in groups[b]) for b in batches]
    assert all(whole) if grouped else not all(whole)
    if grouped:
        assert batches[:6] != batches[6:12]


def test_formula_groups_share_an_integer_per_formula(tmp_path) -> None:
    from helpers import write_dataset

    from acml_dist.data.loader import iter_samples

    root = tmp_path / "ds"
    write_dataset(root, {"train": ["CCO", "COC", "CCC", "CCCO"], "val": ["CC(C)O"], "test": ["c1ccccc1"]}, 2)
    keys = {s["smiles"]: s["key"] for split in ("train", "val", "test") for s in iter_samples(root, split)}
    order = ["CCO", "CCCO", "COC", "c1ccccc1", "CC(C)O", "CCC"]
    groups = formula_groups(root, [keys[k] for k in order])
    assert groups[0] == groups[2] and groups[1] == groups[4] and len(set(groups.tolist())) == 4
    with pytest.raises(KeyError, match="not in"):
        formula_groups(root, ["nope"])


def test_held_out_report_names_both_models_and_chance() -> None:
    def r1(model: str, rows: np.ndarray) -> float:
        return {"trained": 0.5, "twin": 0.1}[model] + len(rows) / 1000

    out = held_out_r1(r1, "trained", "twin", np.arange(6), np.arange(4), pool=3)
    want = {"train_r1": 0.506, "untrained_train_r1": 0.106, "val_r1": 0.504, "untrained_val_r1": 0.104,
            "chance_r1": 1 / 3}  # fmt: skip
    assert out == pytest.approx(want)
    assert set(held_out_r1(r1, "trained", "twin", np.arange(6), np.arange(0), pool=3)) == {
        "train_r1",
        "untrained_train_r1",
    }
