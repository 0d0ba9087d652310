"""The served model under fuzzed input (hypothesis): any value (text, SMILES-alphabet soup, numbers, None,
huge chains) ends with an embedding or a reason, never an exception, and the frame it answers is strict
JSON. The model's stored heavy-atom bound is what refuses big molecules."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

SMILES_ALPHABET = "CNOSPFIBrcnos()[]=#@+-123456789%/\\.Hl|^:,*$ "


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    import torch

    from acml_dist.embedder import GinEmbedder
    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model

    torch.manual_seed(0)
    model = ACMLModel({"schema": "hu", "num_layers": 2, "emb_dim": 8, "proj_dim": 8}, {"morgan": 16})
    path = save_model(
        model.eval(), tmp_path_factory.mktemp("fuzz") / "m", standardize={"max_heavy_atoms": 40}
    )
    return GinEmbedder(path)


values = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=SMILES_ALPHABET, max_size=80),
    st.sampled_from(["CCO", "c1ccccc1", "C" * 41, "C" * 5000, "[Na+].[Cl-]", "CC=CC |t:1|", "CCC |^1:1|"]),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(values, min_size=1, max_size=6))
# found by this test: RDKit's echo of the input cut a multi-byte character and decoding its log raised
@example(batch=["00000000000000" + "\x80" * 8 + "\U00010000" * 3])
def test_every_row_gets_an_embedding_or_a_reason(embedder, batch):
    import pandas as pd

    out = embedder.predict(pd.DataFrame({"smiles": pd.Series(batch, dtype=object)}))
    assert list(out.columns) == ["embedding", "error"] and len(out) == len(batch)
    for value, emb, err in zip(batch, out["embedding"], out["error"]):
        if err is None:
            assert isinstance(value, str) and len(emb) == 8 and all(math.isfinite(v) for v in emb)
        else:
            assert emb is None and isinstance(err, str) and err
        if isinstance(value, str) and value.startswith("C" * 41) and set(value) == {"C"}:
            assert err is not None and ("too_many_heavy_atoms" in err or "too_long" in err)
    json.dumps(out.to_dict(orient="records"), allow_nan=False)  # strict JSON, as the REST server sends
