"""The GIN, heads and ACMLModel on small random graphs; save/load round trip."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.unit


def random_batch(n_graphs: int = 4, schema: str = "hu", seed: int = 0):
    from torch_geometric.data import Batch, Data

    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(n_graphs):
        n = int(torch.randint(2, 8, (1,), generator=gen))
        src = torch.arange(n - 1)
        edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        if schema == "hu":
            x = torch.stack(
                [torch.randint(0, 120, (n,), generator=gen), torch.randint(0, 3, (n,), generator=gen)], 1
            )
            e = torch.stack(
                [torch.randint(0, 4, (n - 1,), generator=gen), torch.zeros(n - 1, dtype=torch.long)], 1
            )
        else:
            x = torch.zeros(n, 9, dtype=torch.long)
            x[:, 0] = torch.randint(0, 119, (n,), generator=gen)
            e = torch.zeros(n - 1, 3, dtype=torch.long)
            e[:, 0] = torch.randint(0, 4, (n - 1,), generator=gen)
        graphs.append(Data(x=x, edge_index=edge_index, edge_attr=torch.cat([e, e])))
    return Batch.from_data_list(graphs)


@pytest.mark.parametrize("schema", ["hu", "ogb"])
@pytest.mark.parametrize("jk,pooling", [("last", "sum"), ("concat", "attention"), ("sum", "mean")])
def test_gin_shapes_and_grads(schema, jk, pooling):
    from acml_dist.models import ACMLModel

    cfg = dict(schema=schema, num_layers=2, emb_dim=16, jk=jk, pooling=pooling, proj_dim=8)
    model = ACMLModel(cfg, {"a": 5, "b": 7})
    batch = random_batch(schema=schema)
    out = model(batch, {"a": torch.randn(4, 5), "b": torch.randn(4, 7)})
    assert model.encode(batch).shape == (4, 16)
    assert set(out) == {"a", "b"} and out["a"][0].shape == (4, 8) and out["b"][1].shape == (4, 8)
    assert out["a"][2].item() == pytest.approx(1 / 0.07, rel=1e-5)
    sum(o[0].sum() + o[1].sum() for o in out.values()).backward()
    assert model.gin.convs[0].edge_embedding.embeddings[0].weight.grad.abs().sum() > 0


def test_gin_embeds_each_graph_independently():
    from acml_dist.models import GIN

    gin = GIN(num_layers=2, emb_dim=16).eval()
    batch = random_batch(3)
    together = gin(batch)
    alone = gin(random_batch(3).__class__.from_data_list([batch.get_example(1)]))
    torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=1e-5)


def test_logit_scale_clamped_and_frozen_option():
    from acml_dist.models import ACMLModel

    model = ACMLModel(dict(num_layers=1, emb_dim=8, proj_dim=4), {"a": 3}, init_logit_scale=500.0)
    assert float(model.logit_scale("a")) == pytest.approx(100.0)
    frozen = ACMLModel(dict(num_layers=1, emb_dim=8, proj_dim=4), {"a": 3}, learnable_scale=False)
    assert all("logit" not in n for n, _ in frozen.named_parameters())


def test_bad_schema_rejected():
    from acml_dist.models import GIN

    with pytest.raises(ValueError, match="schema"):
        GIN(schema="nope")


def test_save_load_roundtrip(tmp_path):
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import load_model, read_config, save_model

    model = ACMLModel(dict(schema="ogb", num_layers=2, emb_dim=16, proj_dim=8), {"rxnfp": 6}).eval()
    save_model(model, tmp_path / "m", {"loss": "clip", "retrieval_top1": 0.5})
    loaded = load_model(tmp_path / "m")
    batch = random_batch(schema="ogb")
    torch.testing.assert_close(model.encode(batch), loaded.encode(batch))
    assert read_config(tmp_path / "m")["teacher_dims"] == {"rxnfp": 6}
    assert read_config(tmp_path / "m")["extra"]["loss"] == "clip"


def test_load_keeps_the_teachers_training_order_and_their_logit_scales(tmp_path):
    """The per-teacher logit scales are one vector in the training order of the teachers; config.json sorts
    its keys, so a load that took the dims' order would hand morgan rxnfp's scale (and make evaluate's
    headline teacher another one than training's)."""
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import load_model, save_model

    model = ACMLModel(dict(num_layers=1, emb_dim=8, proj_dim=4), {"rxnfp": 6, "morgan": 3})
    with torch.no_grad():
        model.log_logit_scale.copy_(torch.tensor([1.0, 2.0]))
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.teachers == ["rxnfp", "morgan"]
    for name in ("rxnfp", "morgan"):
        assert loaded.logit_scale(name).item() == pytest.approx(model.logit_scale(name).item())


def test_batchnorm_normalises_bf16_in_fp32_like_batchnorm1d():
    """bf16 activations and affine parameters with fp32 running statistics (what DeepSpeed's bf16 leaves):
    torch's CPU batch_norm refuses that mix; models.gin.BatchNorm computes in fp32, returns bf16, and
    updates the statistics as nn.BatchNorm1d does on the same values in fp32."""
    from acml_dist.models.gin import BatchNorm

    torch.manual_seed(0)
    x = torch.randn(64, 8) * 3 + 1
    ref, bn = torch.nn.BatchNorm1d(8), BatchNorm(8)
    bn.load_state_dict(ref.state_dict())
    bn.weight.data, bn.bias.data = bn.weight.data.bfloat16(), bn.bias.data.bfloat16()  # as DeepSpeed bf16
    with pytest.raises(RuntimeError):  # the failure this class exists for
        mean, var = ref.running_mean.clone(), ref.running_var.clone()
        torch.nn.functional.batch_norm(x.bfloat16(), mean, var, bn.weight, bn.bias, training=True)
    out = bn(x.bfloat16())
    expected = ref(x.bfloat16().float())
    assert out.dtype == torch.bfloat16 and bn.running_mean.dtype == torch.float32
    assert torch.allclose(out.float(), expected, atol=0.05)
    assert torch.allclose(bn.running_mean, ref.running_mean)
    assert torch.allclose(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1
    out.float().sum().backward()  # gradients reach the bf16 parameters
    assert bn.weight.grad is not None and bn.weight.grad.dtype == torch.bfloat16
    bn.eval(), ref.eval()
    assert torch.allclose(bn(x.bfloat16()).float(), ref(x.bfloat16().float()), atol=0.05)  # running stats
    assert torch.equal(BatchNorm(8)(x), torch.nn.BatchNorm1d(8)(x))  # fp32: nn.BatchNorm1d's own path


def test_init_from_saved_takes_the_gin_and_shared_heads_and_refuses_another_gin(tmp_path):
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import init_from_saved, save_model

    cfg = dict(schema="ogb", num_layers=2, emb_dim=16, proj_dim=8)
    torch.manual_seed(0)
    saved = ACMLModel(cfg, {"a": 5, "b": 7})
    with torch.no_grad():
        saved.log_logit_scale.copy_(torch.tensor([1.0, 2.0]))
    save_model(saved, tmp_path / "m")

    torch.manual_seed(1)  # another init: what was taken must equal the saved tensors, the rest must not
    model = ACMLModel(cfg, {"b": 7, "c": 3, "a": 6})  # b shared; c new; a at another dim
    fresh_c = model.graph_heads["c"].blocks[0]["proj"].weight.clone()
    parts = init_from_saved(model, tmp_path / "m")

    assert parts == {"taken": ["b"], "fresh": ["c", "a"]}
    for key, value in saved.gin.state_dict().items():
        torch.testing.assert_close(model.gin.state_dict()[key], value)
    for side in ("graph_heads", "teacher_heads"):
        for key, value in getattr(saved, side)["b"].state_dict().items():
            torch.testing.assert_close(getattr(model, side)["b"].state_dict()[key], value)
    torch.testing.assert_close(model.graph_heads["c"].blocks[0]["proj"].weight, fresh_c)
    saved_a = saved.teacher_heads["a"].blocks[0]["fc"].weight
    assert not torch.equal(model.teacher_heads["a"].blocks[0]["fc"].weight, saved_a)
    # b sits at index 0 here and 1 in the saved model; c and a keep the fresh 1/0.07
    assert model.log_logit_scale.tolist() == pytest.approx([2.0, math.log(1 / 0.07), math.log(1 / 0.07)])

    wider = ACMLModel({**cfg, "emb_dim": 32}, {"a": 5})
    with pytest.raises(ValueError, match=r"GIN differs .*gin\.atom_encoder.*emb_dim"):
        init_from_saved(wider, tmp_path / "m")
