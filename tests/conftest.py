"""Shared fixtures: a real local Ray (one per test session) and a real MLflow tracking store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# `import helpers` (tests/helpers.py: shared datasets, ports, process kills) from any test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("ACML_LOG_LEVEL", "INFO")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed: CPU accelerator; compiled ops (if any) cached across tests and runs.
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(__file__).resolve().parents[1] / ".torch_extensions"))


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance, started once for the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            object_store_memory=200_000_000,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    """A real MLflow tracking store (SQLite) and artifact root in a temp dir; returns the tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def pytest_collection_modifyitems(config, items):
    """Every test carries the marker of its folder (unit / integration / e2e), so `-m` selects by kind."""
    for item in items:
        for kind in ("unit", "integration", "e2e"):
            if f"tests/{kind}/" in str(item.fspath).replace("\\", "/"):
                item.add_marker(getattr(pytest.mark, kind))
