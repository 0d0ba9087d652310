"""No credentials in MLflow params or logged configs (real SQLite store), and dataset downloads checked by
sha256 (a real HTTP server on 127.0.0.1 stands in for the dataset host)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SECRETS = ("s3cret", "hunter2", "tok123", "pa55")


def test_redact_masks_url_credentials_and_secret_parameters():
    from acml_dist.redact import redact, redact_value

    assert redact("http://alice:s3cret@mlflow:5000/api") == "http://***@mlflow:5000/api"
    assert redact("ray://alice@head:10001") == "ray://***@head:10001"
    assert redact("https://h/x?token=tok123&n=1") == "https://h/x?token=***&n=1"
    assert "sig=***" in redact("https://acct.blob/c?sv=1&sig=abc%2F") and "abc" not in redact("?sig=abc")
    assert redact("sqlite:////tmp/runs/mlflow.db") == "sqlite:////tmp/runs/mlflow.db"  # nothing to hide
    assert redact_value("tracking.password", "pa55") == "***"
    assert redact_value("model.max_tokens", 300) == "300"


def test_run_logger_logs_no_credentials(mlflow_store, tmp_path):
    from mlflow import MlflowClient

    from acml_dist.config import load_config
    from acml_dist.tracking import RunLogger

    cfg = load_config(
        "train",
        [
            f"tracking.tracking_uri={mlflow_store}",
            f"runs_root={tmp_path}",
            "cluster.address=ray://alice:s3cret@head:10001",
            "teachers=fingerprint",
            "teachers.morgan.path='https://bob:hunter2@models.example.com/w.pt?token=tok123'",
            "+teachers.morgan.params.password=pa55",
        ],
    )
    from omegaconf import OmegaConf

    from acml_dist.context import RunContext

    logger = RunLogger(cfg, RunContext.from_config(cfg), enabled=True, run_name="creds")
    logger.start(
        params={"endpoint": "https://carol:pa55@host/x"},
        texts={"config/train.yaml": OmegaConf.to_yaml(cfg)},
        files=[],
    )
    logger.finish({}, files=[], model_dir=tmp_path)
    client = MlflowClient(mlflow_store)
    run = client.get_run(logger.run_id)
    logged = "\n".join(f"{k}={v}" for k, v in run.data.params.items())
    local = client.download_artifacts(logger.run_id, "config/train.yaml", str(tmp_path))
    logged += Path(local).read_text()
    assert "cluster.address=ray://***@head:10001" in logged  # still says where, not who
    assert not [s for s in SECRETS if s in logged], logged


@pytest.fixture()
def dataset_host(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(www), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_downloads_are_checked_by_sha256(dataset_host, tmp_path, monkeypatch):
    from acml_dist.data import datasets, registry

    www, base = dataset_host
    body = b"smiles,p_np\nCCO,1\nc1ccccc1O,0\n"
    (www / "BBBP.csv").write_bytes(body)
    good = hashlib.sha256(body).hexdigest()
    monkeypatch.setenv("ACML_DATA_CACHE", str(tmp_path / "cache"))
    spec = registry.LABELLED["bbbp"]

    def pin(sha256):
        url = f"{base}/BBBP.csv"
        monkeypatch.setitem(registry.LABELLED, "bbbp", dataclasses.replace(spec, url=url, sha256=sha256))

    pin("0" * 64)  # a pinned digest the download does not match: refused, nothing kept
    with pytest.raises(datasets.DatasetUnavailable, match="sha256"):
        datasets.dataset_file("bbbp")
    assert not (tmp_path / "cache" / "BBBP.csv").exists()

    pin(good)
    path = datasets.dataset_file("bbbp")
    assert path.read_bytes() == body and (path.parent / "BBBP.csv.sha256").read_text().strip() == good

    pin(None)  # no pin: the digest recorded at download guards the cached copy
    path.write_bytes(body.replace(b"CCO,1", b"CCO,0"))  # the cache changed behind our back
    with pytest.raises(datasets.DatasetUnavailable, match="changed"):
        datasets.dataset_file("bbbp")
    path.unlink()
    (path.parent / "BBBP.csv.sha256").unlink()
    assert datasets.dataset_file("bbbp").read_bytes() == body  # fetched again, digest recorded
    assert (path.parent / "BBBP.csv.sha256").read_text().strip() == good
