"""The registered model under hostile input and load, served for real: `acml serve` (-> `mlflow models
serve --env-manager local`) on 127.0.0.1 from a SQLite registry, started with a PATH that lacks the venv's
bin. Every row gets an embedding or a reason in strict JSON; a 20,000-atom SMILES (which segfaulted RDKit's
SMILES writer and killed the server) is refused; many concurrent clients with hostile rows mixed in get
answers, and latency percentiles are printed. A pickled model moved to @champion is refused, never run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import free_port, stop_group

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HUGE = "C" * 20000  # RDKit's MolToSmiles segfaults on this chain
HOSTILE = [
    "CCO",
    "",
    "   ",
    "not a smiles",
    HUGE,
    "C" * 150,  # over the trained heavy-atom bound (60 here), under the length limit
    None,
    5,
    3.5,
    True,
    "C1CC",  # unclosed ring
    "[Na+].[Cl-]",  # salt: the largest fragment is one atom, under min_heavy_atoms
    "\u00e9\u00e8\u2603",
    "CC\x00O",
    "[Xx]",
    "CCC |^1:1|",
    "c1ccccc1O",
]


def _strict_json(text: str):
    def refuse(token: str):
        raise ValueError(f"not JSON: bare {token}")

    return json.loads(text, parse_constant=refuse)


def _post(port: int, rows: list, timeout: float = 120) -> tuple[int, str, float]:
    body = json.dumps({"dataframe_split": {"columns": ["smiles"], "data": [[r] for r in rows]}})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(), time.perf_counter() - start
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), time.perf_counter() - start


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _saved_model(path: Path) -> Path:
    import torch

    from acml_dist.models import ACMLModel
    from acml_dist.models.io import save_model

    torch.manual_seed(0)
    model = ACMLModel({"schema": "hu", "num_layers": 2, "emb_dim": 16, "proj_dim": 8}, {"morgan": 32})
    return save_model(model.eval(), path, standardize={"max_heavy_atoms": 60, "min_heavy_atoms": 2})


@pytest.fixture()
def registered(mlflow_store, tmp_path):
    from omegaconf import OmegaConf

    from acml_dist.config import TrackingConfig
    from acml_dist.tracking import register_model

    tcfg = OmegaConf.structured(TrackingConfig(experiment="serve-test"))
    register_model(_saved_model(tmp_path / "m1"), {"retrieval_top1": 0.5}, tcfg)
    return mlflow_store


def _check_rows(rows: list, predictions: list) -> None:
    assert len(predictions) == len(rows)
    for value, row in zip(rows, predictions):
        assert set(row) == {"embedding", "error"}, row
        ok = isinstance(value, str) and value in ("CCO", "c1ccccc1O", "CCC |^1:1|")
        if ok:
            assert row["error"] is None and len(row["embedding"]) == 16, (value, row)
        else:  # a reason, not an embedding
            assert row["embedding"] is None and isinstance(row["error"], str) and row["error"], (value, row)


def test_embedder_rows_get_an_embedding_or_a_reason(tmp_path):
    """In process, the same route the server takes: the reasons themselves."""
    from acml_dist.embedder import GinEmbedder

    embedder = GinEmbedder(_saved_model(tmp_path / "m"))
    _, errors = embedder.embed(HOSTILE)
    reasons = dict(zip(map(repr, HOSTILE), errors))
    assert reasons[repr(HUGE)].startswith("too_long: 20000 characters")
    assert reasons[repr("C" * 150)] == "too_many_heavy_atoms: 150"  # the bound stored with the model
    assert reasons[repr("")] == reasons[repr("   ")] == "empty"
    assert reasons["None"] == "missing" and reasons["5"] == "not_a_string: int"
    assert reasons[repr("not a smiles")].startswith("invalid_smiles")
    assert reasons[repr("[Na+].[Cl-]")].startswith("too_few_heavy_atoms")
    assert reasons[repr("CCO")] is None


def test_serve_hostile_rows_and_concurrent_load(registered, tmp_path):
    port = free_port()
    # PATH without the venv's bin: `acml serve` must find uvicorn itself
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent
    )
    env = {**os.environ, "PATH": path, "ACML_SERVE_PORT": str(port), "MLFLOW_TRACKING_URI": registered}
    env.pop("ACML_SERVE_HOST", None)
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "acml_dist.cli", "serve", "model=models:/acml-gin@champion"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while not _ping(port):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, "server did not answer /ping in 240 s"
            time.sleep(1)
        # bound to loopback only
        assert f"127.0.0.1:{port}" in (tmp_path / "serve.log").read_text()

        status, text, _ = _post(port, HOSTILE)
        assert status == 200, text[-2000:]
        _check_rows(HOSTILE, _strict_json(text)["predictions"])
        status, text, _ = _post(port, [HUGE])  # alone: the request that used to kill the server
        assert status == 200 and _strict_json(text)["predictions"][0]["embedding"] is None
        assert _ping(port) and server.poll() is None

        bad = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=60)
        assert 400 <= refused.value.code < 500
        _strict_json(refused.value.read().decode())  # the error body is JSON too
        assert _ping(port)

        # Load: 16 clients, 160 requests of 8 rows each, a quarter of the rows hostile.
        batches = [[HOSTILE[(i + j) % len(HOSTILE)] for j in range(8)] for i in range(160)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda rows: _post(port, rows, timeout=300), batches))
        wall = time.perf_counter() - t0
        for rows, (status, text, _) in zip(batches, answers):
            assert status == 200, text[-1000:]
            _check_rows(rows, _strict_json(text)["predictions"])
        latencies = sorted(seconds for _, _, seconds in answers)

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

        report = (
            f"serving load: {len(batches)} requests x 8 rows, 16 clients, {wall:.1f} s wall, "
            f"{len(batches) / wall:.1f} req/s; latency ms p50 {pct(0.5):.0f} p90 {pct(0.9):.0f} "
            f"p99 {pct(0.99):.0f} max {latencies[-1] * 1000:.0f}"
        )
        print(report)
        (tmp_path / "load.txt").write_text(report + "\n")
        assert _ping(port) and server.poll() is None
    finally:
        stop_group(server)
        log.close()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_pickled_model_at_champion_is_refused(registered, tmp_path):
    """Someone who can move @champion on an unauthenticated registry points it at a cloudpickled pyfunc:
    embed-smiles, evaluate (resolve_model_dir) and serve refuse it, and its code never runs."""
    import mlflow
    from mlflow import MlflowClient

    from acml_dist.errors import UnsafeFileError
    from acml_dist.serving import load_embedder
    from acml_dist.tracking import resolve_model_dir

    marker = tmp_path / "marker.txt"

    class Evil(mlflow.pyfunc.PythonModel):
        def __init__(self) -> None:
            self.payload = _Payload(str(marker))

        def predict(self, context, model_input, params=None):
            return model_input

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="evil", python_model=Evil(), registered_model_name="acml-gin", pip_requirements=["mlflow"]
        )
    MlflowClient().set_registered_model_alias("acml-gin", "champion", str(info.registered_model_version))
    assert not marker.exists()

    with pytest.raises(UnsafeFileError, match="python_model.pkl|not an acml-gin weights model"):
        load_embedder("models:/acml-gin@champion")
    with pytest.raises(UnsafeFileError, match="loader"):
        resolve_model_dir("models:/acml-gin@champion")
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered, "ACML_SERVE_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "serve", "model=models:/acml-gin@champion"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "not an acml-gin weights model" in done.stderr.strip().splitlines()[-1]
    assert not marker.exists(), "the pickled model ran its payload"


def test_embed_smiles_cli_survives_a_hostile_file(tmp_path):
    """`acml embed-smiles` on a CSV with the 20,000-atom SMILES (it died with exit 139, no output): every
    row kept, in order, with an embedding or an error."""
    import pandas as pd

    _saved_model(tmp_path / "run" / "model")
    rows = ["CCO", HUGE, "", "not a smiles", "C" * 150, "c1ccccc1O"]
    # the SMILES column in another case, and an id column that must come through
    pd.DataFrame({"id": range(6), "SMILES": rows}).to_csv(tmp_path / "in.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "acml_dist.cli", "embed-smiles", f"input={tmp_path / 'in.csv'}",
         f"output={tmp_path / 'out.parquet'}", f"model={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6 rows, 2 embedded, 4 invalid, dim 16" in done.stdout
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["error"].iloc[1].startswith("too_long") and out["error"].iloc[2] == "missing"
    assert pd.isna(out["error"].iloc[0]) and pd.isna(out["error"].iloc[5])
    assert out["id"].tolist() == list(range(6)) and out.columns[:3].tolist() == ["id", "SMILES", "error"]


def test_embed_smiles_reads_an_sdf(tmp_path):
    """An SDF as `acml embed-smiles` input: one output row per record, its data items kept, a record RDKit
    cannot read given no embedding and a reason."""
    import pandas as pd
    from omegaconf import OmegaConf
    from rdkit import Chem

    from acml_dist.serving import embed_smiles_file

    _saved_model(tmp_path / "run" / "model")
    blocks = [Chem.MolToMolBlock(Chem.MolFromSmiles(s)) for s in ("CCO", "c1ccccc1O")]
    # neopentane with a nitrogen at the centre: four bonds and no charge, refused by RDKit's sanitisation
    blocks.insert(1, Chem.MolToMolBlock(Chem.MolFromSmiles("C(C)(C)(C)C")).replace(" C   0", " N   0", 1))
    records = [f"{block}> <id>\nX{i}\n\n$$$$\n" for i, block in enumerate(blocks)]
    (tmp_path / "in.sdf").write_text("".join(records))
    cfg = {"input": str(tmp_path / "in.sdf"), "output": str(tmp_path / "out.parquet"),
           "smiles_column": "smiles", "model": str(tmp_path / "run"), "batch_size": 8}  # fmt: skip
    assert embed_smiles_file(OmegaConf.create(cfg)) == {"rows": 3, "valid": 2, "dim": 16}
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["id"].tolist() == ["X0", "X1", "X2"] and out["smiles"].tolist()[::2] == ["CCO", "Oc1ccccc1"]
    assert out["error"].iloc[1] == "missing" and out["error"].iloc[::2].isna().all()
