"""Commands started together on a fresh machine share one new SQLite MLflow store: each must find it created
once (MLflow's migration run twice at once dies in alembic), and every run must land in it."""

from __future__ import annotations

import subprocess
import sys
import time

import mlflow

CHILD = """
import sys, time
from acml_dist.context import mlflow_session
uri, start, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, start - time.time()))  # all children open the store at the same moment
with mlflow_session(name, uri, experiment="race") as s:
    import mlflow
    mlflow.log_metric("x", 1.0)
"""


def test_commands_started_together_create_one_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    start = time.time() + 8.0  # after every child has imported MLflow
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, uri, str(start), f"run{i}"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    errors = [c.communicate(timeout=180)[1].decode()[-2000:] for c in children]
    assert [c.returncode for c in children] == [0] * 4, "\n".join(errors)
    runs = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("race").experiment_id]
    )
    assert sorted(r.info.run_name for r in runs) == [f"run{i}" for i in range(4)]
