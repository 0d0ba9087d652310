"""One SMILES -> graph route (issue 13): the registered model, given the *raw input* a molecule came from
(salts, charges, non-canonical order, a CXSMILES extension), embeds it exactly as the GIN embeds the graph
stored in the training shards, and refuses what featurisation rejected for the same reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.integration

RAW = [
    "OCC.[Na+].[Cl-]",  # salt: the largest fragment is kept
    "C(C(=O)[O-])c1ccccc1",  # charged: neutralised by the standardiser
    "c1ccccc1C(=O)Nc1ccc(O)cc1",  # non-canonical atom order
    "CC=CC(C)CCO |t:1|",  # CXSMILES: the E/Z mark lives in the extension
    "N[C@@H](Cc1ccccc1)C(=O)O",  # stereo
    "OC1=CC=CC=C1CCN",
    "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",  # 37 heavy atoms: over this test's max_heavy_atoms
    "C1CC",  # invalid
]


def test_registered_model_embeds_raw_input_as_the_shards_hold_it(ray_local, mlflow_store, tmp_path):
    import mlflow
    import pandas as pd
    import torch
    from omegaconf import OmegaConf
    from torch_geometric.data import Batch

    from acml_dist.config import TrackingConfig, load_config
    from acml_dist.data.featurize import featurize_corpus
    from acml_dist.data.loader import graph_from_npz, iter_samples
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model
    from acml_dist.tracking import register_model
    from acml_dist.training.trainer import standardize_config

    (tmp_path / "corpus.csv").write_text("smiles\n" + "\n".join(f'"{s}"' for s in RAW) + "\n")
    root = tmp_path / "ds"
    overrides = [f"input={tmp_path / 'corpus.csv'}", f"output={root}", "data=file", "data.split=random",
                 "data.split_fractions=[1.0,0.0,0.0]", "data.standardize.max_heavy_atoms=30",
                 "data.exclude=[]", "cluster.num_cpus=1"]  # fmt: skip
    featurize_corpus(load_config("featurize", overrides))
    samples = list(iter_samples(root, "train"))
    rejects = [json.loads(line) for line in (root / "rejects.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and len(rejects) == 2, (samples, rejects)

    torch.manual_seed(0)
    model = ACMLModel({"schema": "hu", "num_layers": 3, "emb_dim": 32, "proj_dim": 16}, {"morgan": 64}).eval()
    model_dir = save_model(model, tmp_path / "model", standardize=standardize_config(root))
    tracking_cfg = OmegaConf.structured(TrackingConfig(experiment="route"))
    register_model(model_dir, {"retrieval_top1": 0.5}, tracking_cfg)
    served = mlflow.pyfunc.load_model("models:/acml-gin@champion")

    inputs = [s["meta"]["input"] for s in samples]
    assert sorted(inputs) == sorted(set(RAW) - {r["input"] for r in rejects})
    out = served.predict(pd.DataFrame({"smiles": inputs}))
    assert out["error"].isna().all(), out["error"].tolist()
    with torch.no_grad():
        from_shards = model.encode(Batch.from_data_list([graph_from_npz(s["arrays"], "hu") for s in samples]))
    np.testing.assert_allclose(np.stack(out["embedding"].tolist()), from_shards.numpy(), rtol=1e-5, atol=1e-6)

    refused = served.predict(pd.DataFrame({"smiles": [r["input"] for r in rejects]}))
    reasons = {r["input"]: r["reason"].split(":")[0] for r in rejects}
    for raw, err in zip([r["input"] for r in rejects], refused["error"]):
        assert err and err.split(":")[0] == reasons[raw], (raw, err, reasons[raw])
