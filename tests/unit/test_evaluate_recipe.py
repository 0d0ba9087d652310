"""The fine-tuning recipe's pieces, without timing anything: the lr schedule's shape, the best-validation
checkpoint that is restored, the encoder's own rate, the chirality handling, and the balanced scaffold
split."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from acml_dist.evaluate.finetuning import LabelledSet, fit_predictor, lr_factor

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_warms_up_linearly_then_decays_to_the_final_fraction(schedule):
    total, warmup, final = 200, 20, 0.01
    f = np.array([lr_factor(s, total, warmup, schedule, final) for s in range(total + 1)])
    np.testing.assert_allclose(f[:warmup], np.arange(1, warmup + 1) / warmup)  # linear ramp to the peak
    assert f[warmup] == pytest.approx(1.0) and f.max() == pytest.approx(1.0)
    assert np.all(np.diff(f[warmup:]) <= 1e-12) and f[-1] == pytest.approx(final)
    middle = f[warmup + (total - warmup) // 2]
    assert middle == pytest.approx(final + (1 - final) * 0.5)  # cosine and linear meet at the midpoint
    quarter = f[warmup + (total - warmup) // 4]
    expected = 0.5 * (1 + np.cos(np.pi / 4)) if schedule == "cosine" else 0.75
    assert quarter == pytest.approx(final + (1 - final) * expected)
    assert [lr_factor(s, total, 0, "constant") for s in (0, 50, 200)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, 0, "step")


def _toy(n: int = 80, seed: int = 0):
    import torch
    from torch_geometric.data import Data

    rng = np.random.default_rng(seed)
    graphs, y = [], []
    for _ in range(n):
        atoms = int(rng.integers(3, 10))
        z = rng.choice([6, 7, 8], size=atoms)
        x = torch.tensor(np.stack([z, np.zeros(atoms, dtype=int)], 1), dtype=torch.long)
        src = torch.arange(atoms - 1)
        edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        graphs.append(
            Data(x=x, edge_index=edge_index, edge_attr=torch.zeros(edge_index.size(1), 2, dtype=torch.long))
        )
        y.append(float((z == 8).sum()))
    data = LabelledSet("toy", "regression", ["o"], [""] * n, graphs, np.array(y)[:, None], rows=n)
    return data, (np.arange(60), np.arange(60, 70), np.arange(70, n))


def test_fit_steps_the_schedule_per_batch_over_the_whole_budget():
    from acml_dist.models.gin import GIN

    data, split = _toy()
    fit = fit_predictor(
        GIN(emb_dim=16, num_layers=2), 16, data, split, seed=0, epochs=10, patience=100, batch_size=16,
        lr=1e-2, warmup=0.2, schedule="cosine", final_lr=0.1,
    )  # fmt: skip
    lrs = [c["lr"] for c in fit.curve]  # lr after each epoch's last step: 4 batches an epoch, 40 steps
    assert len(lrs) == 10
    assert lrs[0] < lrs[1] and max(lrs) == pytest.approx(lrs[1])  # warm-up ends inside epoch 2 (step 8)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] == pytest.approx(1e-3)


def test_the_restored_weights_are_the_best_validation_epochs():
    import torch

    from acml_dist.evaluate.finetuning import task_metrics
    from acml_dist.models.gin import GIN

    data, split = _toy()
    snapshots: dict[int, dict] = {}

    def on_epoch(epoch, model, record):
        snapshots[epoch] = copy.deepcopy(model.state_dict())
        if epoch >= 3:  # wreck the head from epoch 3 on: later epochs validate worse than the early ones
            with torch.no_grad():
                model[1][-1].weight.mul_(25.0).add_(3.0)

    fit = fit_predictor(
        GIN(emb_dim=16, num_layers=2), 16, data, split, seed=0, epochs=8, patience=4, batch_size=16,
        lr=5e-3, warmup=0.1, schedule="cosine", weight_decay=1e-4, on_epoch=on_epoch,
    )  # fmt: skip
    vals = [c["val_rmse"] for c in fit.curve]
    assert fit.best_epoch == int(np.argmin(vals)) + 1 and fit.best_epoch <= 3 < len(vals)
    restored = fit.model.state_dict()
    for name, tensor in snapshots[fit.best_epoch].items():
        assert torch.equal(restored[name], tensor), name
    last = snapshots[len(vals)]
    assert any(not torch.equal(restored[k], last[k]) for k in last)
    assert fit.val["rmse"] == pytest.approx(vals[fit.best_epoch - 1], rel=1e-6)
    assert set(task_metrics(data.y[split[2]], data.y[split[2]], "regression")) == set(fit.test)


def test_weight_averaging_scores_and_restores_the_moving_average():
    """With `ema`, validation reads the moving average of the weights, and the restored (tested) weights are
    the average at the best validation epoch: not the last step's weights of that epoch."""
    import torch

    from acml_dist.models.gin import GIN

    data, split = _toy()
    live: dict[int, dict] = {}

    def on_epoch(epoch, model, record):
        live[epoch] = copy.deepcopy(model.state_dict())

    kwargs = dict(seed=0, epochs=6, patience=100, batch_size=16, lr=1e-2, warmup=0.0, schedule="constant")
    plain = fit_predictor(GIN(emb_dim=16, num_layers=2), 16, data, split, **kwargs)
    fit = fit_predictor(GIN(emb_dim=16, num_layers=2), 16, data, split, ema=0.9, on_epoch=on_epoch, **kwargs)
    vals = [c["val_rmse"] for c in fit.curve]
    assert fit.val["rmse"] == pytest.approx(vals[fit.best_epoch - 1], rel=1e-6)  # the scored checkpoint
    assert vals != [c["val_rmse"] for c in plain.curve]  # validation read other weights than the last step's
    restored, stepped = fit.model.state_dict(), live[fit.best_epoch]
    weights = [k for k in stepped if stepped[k].is_floating_point()]
    assert all(torch.isfinite(restored[k]).all() for k in weights)
    assert any(not torch.allclose(restored[k], stepped[k]) for k in weights)
    with pytest.raises(ValueError, match="ema"):
        fit_predictor(GIN(emb_dim=16, num_layers=2), 16, data, split, ema=1.0, **kwargs)


def test_the_average_spans_at_most_a_tenth_of_a_run():
    from acml_dist.evaluate.finetuning import ema_decay

    assert ema_decay(0.99, 1700) == 0.99  # FreeSolv's 100 epochs: as asked (horizon 100 of 1,700 steps)
    assert ema_decay(0.99, 145) == pytest.approx(1 - 10 / 145)  # a 5-epoch run: its last ~14 steps
    assert ema_decay(0.99, 6) == 0.0 and ema_decay(0.0, 5000) == 0.0  # too short to average; off
    with pytest.raises(ValueError, match="ema"):
        ema_decay(1.0, 100)


def test_the_encoder_trains_at_its_own_fraction_of_the_rate():
    import torch

    from acml_dist.models.gin import GIN

    data, split = _toy()
    kwargs = dict(seed=0, epochs=3, patience=100, batch_size=16, lr=1e-2, warmup=0.0, schedule="constant")
    moved = {}
    for scale in (1.0, 0.1, 0.0):
        torch.manual_seed(0)
        encoder = GIN(emb_dim=16, num_layers=2)
        before = {k: p.detach().clone() for k, p in encoder.named_parameters()}  # not BatchNorm's statistics
        fit = fit_predictor(encoder, 16, data, split, encoder_lr=scale, **kwargs)
        after = dict(fit.model[0].named_parameters())
        moved[scale] = sum(float((after[k].detach() - before[k]).abs().sum()) for k in before)
        assert fit.curve[-1]["lr"] == pytest.approx(1e-2)  # the head's rate
    assert moved[0.0] == 0.0 < moved[0.1] < moved[1.0]


def test_a_frozen_encoder_keeps_its_weights_and_statistics_then_trains():
    import torch

    from acml_dist.models.gin import GIN

    data, split = _toy()
    kwargs = dict(seed=0, epochs=3, patience=100, batch_size=16, lr=1e-2, warmup=0.0, schedule="constant")
    torch.manual_seed(0)
    encoder = GIN(emb_dim=16, num_layers=2)
    before = {k: v.detach().clone() for k, v in encoder.state_dict().items()}  # BatchNorm's statistics too
    moved: list[float] = []
    head_moved: list[float] = []
    head_before = {}

    def on_epoch(epoch: int, model, record: dict) -> None:
        now = model[0].state_dict()
        moved.append(sum(float((now[k].double() - before[k].double()).abs().sum()) for k in before))
        head = {k: v.detach().clone() for k, v in model[1].state_dict().items()}
        change = sum(float((head[k] - head_before[k]).abs().sum()) for k in head) if head_before else 1.0
        head_moved.append(change)
        head_before.update(head)

    fit_predictor(encoder, 16, data, split, frozen_epochs=2, on_epoch=on_epoch, **kwargs)
    assert moved[0] == moved[1] == 0.0 < moved[2]  # frozen for epochs 1 and 2, trained in epoch 3
    assert all(m > 0 for m in head_moved)  # the head learns throughout


def _tagged_and_plain():
    from rdkit import Chem

    from acml_dist.chem.featurize import mol_to_graph
    from acml_dist.data.loader import graph_from_npz

    smiles = "C[C@H](N)[C@@H](O)C(=O)O"  # two stereocentres: CW and CCW tags
    tagged = graph_from_npz(mol_to_graph(Chem.MolFromSmiles(smiles), smiles), "hu")
    plain = graph_from_npz(mol_to_graph(Chem.MolFromSmiles("CC(N)C(O)C(=O)O"), "CC(N)C(O)C(=O)O"), "hu")
    assert set(tagged.x[:, 1].tolist()) == {0, 1, 2} and set(plain.x[:, 1].tolist()) == {0}
    return tagged, plain


def _embed(gin, graph):
    import torch
    from torch_geometric.data import Batch

    gin.eval()
    with torch.no_grad():
        return gin(Batch.from_data_list([graph]))


@pytest.mark.parametrize("mode", ["zero", "drop", "keep"])
def test_untrained_chirality_rows_cannot_move_a_tagged_molecules_embedding(mode):
    """A pretrained encoder's CW / CCW rows are whatever pretraining on a stereo-free corpus left: random.
    Under `zero` (the default) and `drop` they cannot reach a tagged molecule's embedding."""
    import torch

    from acml_dist.evaluate.chirality import chirality_embedding, prepare_encoder, prepare_graphs
    from acml_dist.models.gin import GIN

    tagged, plain = _tagged_and_plain()
    torch.manual_seed(0)
    gin = GIN(emb_dim=32, num_layers=3)
    perturbed = copy.deepcopy(gin)
    with torch.no_grad():
        chirality_embedding(perturbed).weight[1:] += 5.0 * torch.randn(2, 32)
    seen = prepare_graphs([tagged], mode)[0]
    a = _embed(prepare_encoder(gin, mode), seen)
    b = _embed(prepare_encoder(perturbed, mode), seen)
    if mode in ("zero", "drop"):  # the untrained rows do not matter, and the tagged atoms read as untagged
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, _embed(gin, plain))
        assert tagged.x[:, 1].ne(0).sum() == 2  # the input graph is left alone
    if mode == "zero":  # the rows stay trainable parameters of their own (fine-tuning may move them apart)
        weight = chirality_embedding(gin).weight
        assert weight.requires_grad and all(torch.equal(weight[i], weight[0]) for i in (1, 2))
    if mode == "keep":  # the untrained rows move the embedding; the other modes exist for this reason
        assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize(
    ("override", "split", "message"),
    [
        ("chirality=ignore", "scaffold", "eval.chirality='ignore'"),
        ("schedule=step", "scaffold", "eval.schedule='step'"),
        ("warmup=1.5", "scaffold", "eval.warmup=1.5"),
        ("ema=1", "scaffold", "eval.ema=1"),
        ("final_lr=2", "scaffold", "eval.final_lr=2"),
        ("batch_size=1", "scaffold", "eval.batch_size=1"),
        ("finetune_epochs=0", "scaffold", "eval.finetune_epochs=0"),
        ("seeds=[]", "scaffold", "eval.seeds=\\[\\]"),
        ("lr=0.001", "stratified", "split_kind='stratified'"),
    ],
)
def test_a_recipe_that_cannot_run_is_refused_with_one_line(override, split, message):
    """One owner (config/checks.py): the recipe alone at run time and the composed config at load time
    refuse the same value with the same line."""
    from omegaconf import OmegaConf

    from acml_dist.config import load_config
    from acml_dist.config.checks import check_recipe
    from acml_dist.config.eval import EvalConfig
    from acml_dist.errors import ConfigError

    good = OmegaConf.structured(EvalConfig)
    check_recipe(good, "scaffold_balanced")  # the defaults run
    with pytest.raises(ConfigError, match=message):
        check_recipe(OmegaConf.merge(good, OmegaConf.from_dotlist([override])), split)
    overrides = [f"eval.{override}", f"eval.split_kind={split}"]
    with pytest.raises(ConfigError, match=message):
        load_config("evaluate", overrides, complete=False)


def _scaffold_library() -> list[str]:
    """~45 scaffolds with 1-9 members each (substituents vary, the ring system does not)."""
    rings = [
        "c1ccccc1",
        "c1ccncc1",
        "C1CCCCC1",
        "C1CCNCC1",
        "c1ccsc1",
        "C1CCOC1",
        "c1cnccn1",
        "C1CC1",
        "c1ccoc1",
    ]
    subs = ["C", "O", "N", "F", "Cl", "CC", "OC", "C(=O)O", "N#C"]
    out = []
    for i, a in enumerate(rings):
        for k, linker in enumerate(["", "C", "CC", "CCC", "OC"]):
            members = 1 + (3 * i + 5 * k) % 9
            for m in range(members):
                out.append(f"{subs[m]}{a}{linker}{a}" if linker else f"{subs[m]}{a}")
    return out


def test_balanced_scaffold_split_is_seeded_disjoint_and_sized():
    from acml_dist.evaluate.splits import balanced_scaffold_split, make_split, murcko_scaffold

    smiles = _scaffold_library()
    n = len(smiles)
    splits = {seed: balanced_scaffold_split(smiles, (0.8, 0.1, 0.1), seed) for seed in (0, 1, 2)}
    again = make_split(smiles, "scaffold_balanced", [0.8, 0.1, 0.1], 0)
    assert all(np.array_equal(a, b) for a, b in zip(splits[0], again))  # deterministic per seed
    assert any(not np.array_equal(splits[0][2], splits[s][2]) for s in (1, 2))  # the seed moves the test set
    groups: dict[str, int] = {}
    for s in smiles:
        groups[murcko_scaffold(s)] = groups.get(murcko_scaffold(s), 0) + 1
    assert len(groups) > 30
    for train, val, test in splits.values():
        assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(n))
        parts = [{murcko_scaffold(smiles[i]) for i in part} for part in (train, val, test)]
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
        assert len(train) <= 0.8 * n and len(val) <= 0.1 * n and len(train) >= 0.8 * n - max(groups.values())
        big = {s for s, c in groups.items() if c > 0.1 * n / 2}
        assert big and big <= parts[0]  # scaffold sets larger than half the val/test size train first


def test_unknown_split_kind_is_refused():
    from acml_dist.errors import DataError
    from acml_dist.evaluate.splits import make_split

    with pytest.raises(DataError, match="scaffold_balanced"):
        make_split(["CCO"] * 10, "stratified", [0.8, 0.1, 0.1], 0)


def test_scratch_baseline_reads_the_same_molecules_in_its_own_schema():
    """`eval.scratch_schema`: the baseline gets the same molecules, order and labels as graphs of another
    schema (OGB: 9 atom / 3 bond columns), the pretrained encoder keeps its own (Hu: 2 / 2)."""
    import pandas as pd
    from omegaconf import OmegaConf
    from torch_geometric.data import Batch

    from acml_dist.config.data import DataConfig
    from acml_dist.evaluate.labelled import featurize_labelled
    from acml_dist.evaluate.properties import fresh_like
    from acml_dist.models import ACMLModel

    smiles = ["CCO", "c1ccccc1O", "not_a_smiles", "C[C@H](N)C(=O)O"]
    frame = pd.DataFrame({"smiles": smiles, "y": [1, 2, 3, 4]})
    std = OmegaConf.structured(DataConfig).standardize
    data = featurize_labelled(frame, "smiles", ["y"], "regression", "t", "hu", std)
    ogb = data.in_schema("ogb")
    assert ogb.smiles == data.smiles and (ogb.y == data.y).all() and len(ogb.graphs) == 3
    assert [g.x.shape[1] for g in data.graphs] == [2] * 3 and [g.x.shape[1] for g in ogb.graphs] == [9] * 3
    assert [g.x.shape[0] for g in ogb.graphs] == [g.x.shape[0] for g in data.graphs]
    # element and chirality tag are the first two columns in both
    assert all((a.x[:, :2] == b.x[:, :2]).all() for a, b in zip(data.graphs, ogb.graphs))
    model = ACMLModel({"schema": "hu", "emb_dim": 16, "num_layers": 2}, {"t": 8})
    scratch = fresh_like(model, 0, 32, "ogb")
    assert scratch.model_cfg["schema"] == "ogb" and scratch.model_cfg["emb_dim"] == 32
    assert scratch.encode(Batch.from_data_list(ogb.graphs)).shape == (3, 32)


def test_paired_comparison_names_a_winner_only_where_the_seeds_resolve_it() -> None:
    from acml_dist.evaluate.properties import paired_comparison
    from acml_dist.evaluate.report import paired_rows

    def runs(ft: list[float], scratch: list[float], metric: str = "rmse") -> list[dict]:
        out = [{"seed": s, "method": "acml_finetune", metric: v} for s, v in enumerate(ft)]
        out += [{"seed": s, "method": "scratch_finetune", metric: v} for s, v in enumerate(scratch)]
        return out + [{"seed": 0, "method": "train_mean", metric: 9.0}]

    # differences -1, -2, -3: t = -2 / (1 / sqrt 3) = -3.464 with 2 degrees of freedom, p = 0.0742
    pc = paired_comparison(runs([1.0, 1.0, 1.0], [2.0, 3.0, 4.0]), "rmse", higher=False)
    assert pc["seeds"] == 3 and pc["wins"] == 3
    assert pc["mean_diff"] == pytest.approx(-2.0) and pc["std_diff"] == pytest.approx(1.0)
    assert pc["p"] == pytest.approx(0.0742, abs=1e-4)
    assert pc["verdict"] == "not resolved by 3 seeds"
    # the same differences over more seeds resolve it, and the direction follows the metric
    many = runs([1.0] * 6, [2.0, 3.0, 4.0, 2.0, 3.0, 4.0])
    assert paired_comparison(many, "rmse", higher=False)["verdict"] == "fine-tuned better"
    assert paired_comparison(many, "rmse", higher=True)["verdict"] == "from scratch better"
    auc = paired_comparison(runs([0.7, 0.72, 0.71, 0.69], [0.8, 0.81, 0.83, 0.8], "roc_auc"), "roc_auc", True)
    assert auc["verdict"] == "from scratch better" and auc["wins"] == 0
    # one seed: no test; seeds missing a method are left out
    one = paired_comparison(runs([1.0], [2.0]), "rmse", higher=False)
    assert one["seeds"] == 1 and np.isnan(one["p"]) and one["verdict"] == "not resolved by 1 seed"
    assert paired_comparison(runs([1.0], []), "rmse", higher=False) is None
    row = paired_rows({"esol": {"paired": pc}})[0]
    assert row["fine-tuned - scratch"] == "-2.000 ± 1.000" and row["paired t-test p"] == "0.074"
    assert row["fine-tuned better in"] == "3 of 3 seeds"
