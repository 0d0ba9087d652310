"""The whole system as a user runs it: a real local Ray head and a real `mlflow server` on 127.0.0.1,
`ray job submit` of cluster/pretrain.py on a tiny corpus, a registry pull in a fresh process, and a REST
query of `mlflow models serve`. Everything started here is stopped here."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, stop_group

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # answering (e.g. 401 from Ray's token-authenticated dashboard)
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def wait_port(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process waited on for port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if (
                s.connect_ex(("127.0.0.1", port)) == 0
                or s.connect_ex((socket.gethostbyname(socket.gethostname()), port)) == 0
            ):
                return
        time.sleep(1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )


@pytest.fixture()
def services():
    work = Path(tempfile.mkdtemp(prefix="acml-e2e-", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Token auth as in scripts/demo.sh: the token lives in this test's folder (never ~/.ray), so the
        # test passes on a machine where Ray never ran.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(work / "ray_auth_token"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_AUTH_TOKEN", None)
    (work / "ray_auth_token").write_text(secrets.token_hex(32))
    (work / "ray_auth_token").chmod(0o600)
    mlflow_port, ray_port, dash_port, agent_port = free_port(), free_port(), free_port(), free_port()
    # Every port of the head is chosen free, so the test never collides with another Ray on the machine.
    extra_ports = [
        ("--dashboard-agent-listen-port", agent_port),
        ("--dashboard-agent-grpc-port", free_port()),
        ("--runtime-env-agent-port", free_port()),
        ("--metrics-export-port", free_port()),
        ("--ray-client-server-port", free_port()),
    ]
    procs = []
    try:
        mlflow_proc = start(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{work}/mlflow.db",
                "--artifacts-destination",
                str(work / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            env,
            work / "mlflow.log",
        )
        procs.append(mlflow_proc)
        ray_proc = start(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                "--block",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(ray_port),
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(dash_port),
                "--num-cpus",
                "2",
                "--object-store-memory",
                "300000000",
                "--temp-dir",
                str(work / "ray"),
                "--disable-usage-stats",
                *[str(x) for pair in extra_ports for x in pair],
            ],
            env,
            work / "ray.log",
        )
        procs.append(ray_proc)
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        wait_http(f"{mlflow_uri}/health", 90, mlflow_proc)
        wait_http(f"http://127.0.0.1:{dash_port}/api/version", 120, ray_proc)
        wait_port(agent_port, 120, ray_proc)  # the job agent: submissions fail until it listens
        yield {"work": work, "env": env, "mlflow": mlflow_uri, "dashboard": f"http://127.0.0.1:{dash_port}"}
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        shutil.rmtree(work, ignore_errors=True)


def test_ray_job_pipeline_registry_and_rest(services):
    work, env = services["work"], services["env"]
    overrides = [
        "name=e2e",
        "data=nci5k",
        "data.limit=400",
        "data.samples_per_shard=100",
        "teachers=fingerprint",
        "model=gin_small",
        "trainer.epochs=2",
        "trainer.micro_batch=32",
        "trainer.checkpoint_every=1000",
        "eval=quick",
        "eval.property_datasets=[]",
        "eval.retrieval_pools=[32]",
        "eval.probing=false",
        "eval.embedding_map=false",
        "cluster.address=auto",
        f"shards_root={work}/shards",
        f"runs_root={work}/runs",
        f"tracking.tracking_uri={services['mlflow']}",
    ]
    submit = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            services["dashboard"],
            "--working-dir",
            ".",
            "--runtime-env-json",
            json.dumps({"excludes": [".venv", ".git", "shards", "runs", ".demo"]}),
            "--",
            "python",
            "cluster/pretrain.py",
            *overrides,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = submit.stdout + submit.stderr
    assert submit.returncode == 0 and "succeeded" in log, log[-6000:]
    assert "acml pipeline 'e2e'" in log  # the final summary table was printed by the job

    manifest = json.loads((work / "shards" / "e2e" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert (
        counts["read"] == counts["written"] + counts["rejected"] + counts["duplicates"] + counts["excluded"]
    )

    # A downstream user: a fresh process with only the package, pulling the champion from the registry.
    probe = (
        "import mlflow, pandas as pd, numpy as np\n"
        "m = mlflow.pyfunc.load_model('models:/acml-gin@champion')\n"
        "out = m.predict(pd.DataFrame({'smiles': ['CCO', 'c1ccccc1O', 'CC(=O)Oc1ccccc1C(=O)O']}))\n"
        "assert list(out.columns) == ['embedding', 'error'] and out['error'].isna().all(), out\n"
        "a = np.asarray(out['embedding'].tolist(), dtype=float)\n"
        "assert a.shape[0] == 3 and a.shape[1] > 1 and np.isfinite(a).all(), a.shape\n"
        "assert not np.allclose(a[0], a[1])\n"
        "print('EMB', a.shape)\n"
    )
    pull = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "MLFLOW_TRACKING_URI": services["mlflow"]},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pull.returncode == 0 and "EMB (3," in pull.stdout, pull.stdout + pull.stderr

    # A file of SMILES through the CLI: one row per input, invalid SMILES kept as NaN rows and counted.
    (work / "in.csv").write_text("smiles\nCCO\nnot_a_smiles\nc1ccccc1O\n")
    cli = subprocess.run(
        [str(BIN / "acml"), "embed-smiles", f"input={work / 'in.csv'}", f"output={work / 'out.parquet'}"],
        env={**env, "MLFLOW_TRACKING_URI": services["mlflow"]},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "3 rows, 2 embedded, 1 invalid" in cli.stdout

    # The same model over REST.
    port = free_port()
    serve = start(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/acml-gin@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        {**env, "MLFLOW_TRACKING_URI": services["mlflow"]},
        work / "serve.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", 180, serve)
        body = json.dumps({"dataframe_split": {"columns": ["smiles"], "data": [["CCO"], ["c1ccccc1N"]]}})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
        assert len(predictions) == 2
    finally:
        stop_group(serve)
