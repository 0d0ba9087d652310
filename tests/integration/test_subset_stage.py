"""The one subset-stage driver (`acml_dist.data.subset_stage`) runs `acml depict` and `acml nmr-predict` in a
local process pool (`cluster.address=processes`, a node without Ray) to the same chunks, rejects and
manifests as on Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DEMO_SMILES, write_dataset
from rdkit import Chem

from acml_dist.config import load_config
from acml_dist.data.image_stage import depict_dataset
from acml_dist.data.modalities import modality_dir
from acml_dist.data.nmr_stage import predict_dataset

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NO_RAY = "import sys; sys.modules['ray'] = None\n"  # any `import ray` now raises ImportError
DEPICT = ["limit=0", "chunk_size=3", "workers=2", "store_size=64", "max_heavy_atoms=9"]
NMR = ["limit=0", "chunk_size=3", "workers=2", "nuclei=[1H]"]
RUN_FIELDS = {"elapsed_s", "rate_mol_per_s", "rate_mol_per_s_per_core"}  # timings of this run


def test_process_pool_equals_ray_without_ray_installed(ray_local, tmp_path: Path) -> None:
    splits = {"train": DEMO_SMILES[:8], "val": DEMO_SMILES[19:22]}  # the last three: > 9 heavy atoms
    for name in ("ray", "pool"):
        write_dataset(tmp_path / name, splits, samples_per_shard=4)
    ray_root, pool_root = tmp_path / "ray", tmp_path / "pool"
    on_ray = {
        "image": depict_dataset(load_config("depict", [f"shards={ray_root}", *DEPICT])),
        **predict_dataset(load_config("nmr_predict", [f"shards={ray_root}", *NMR])),
    }
    pooled = ["cluster.address=processes"]
    code = NO_RAY + (
        "from acml_dist.config import load_config\n"
        "from acml_dist.data.image_stage import depict_dataset\n"
        "from acml_dist.data.nmr_stage import predict_dataset\n"
        f"depict_dataset(load_config('depict', {[f'shards={pool_root}', *DEPICT, *pooled]!r}))\n"
        f"predict_dataset(load_config('nmr_predict', {[f'shards={pool_root}', *NMR, *pooled]!r}))\n"
    )
    env = {**os.environ, "ACML_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    big = [s for s in splits["val"] if Chem.MolFromSmiles(s).GetNumHeavyAtoms() > 9]
    assert big and on_ray["image"]["counts"] == {
        "selected": 11,
        "written": 11 - len(big),
        "rejected": len(big),
    }
    assert on_ray["nmr1h"]["counts"]["selected"] == 11
    for modality, ray_manifest in on_ray.items():
        manifest = json.loads((modality_dir(pool_root, modality) / "manifest.json").read_text())
        same = {k: v for k, v in manifest.items() if k not in RUN_FIELDS}
        assert same == {k: v for k, v in ray_manifest.items() if k not in RUN_FIELDS}, modality
        assert manifest["workers"] == 2 and manifest["molecules_computed_now"] == 11
        rejects = [
            (modality_dir(root, modality) / "rejects.jsonl").read_bytes() for root in (ray_root, pool_root)
        ]
        assert rejects[0] == rejects[1]
