"""The cluster material is valid for its tools: the Ray cluster YAML through Ray's own config preparation and
JSON-schema validator, the KubeRay RayJob against the CRD's structure and its pod templates against the
Kubernetes API schema (kubernetes-validate), the SLURM script through bash and sbatch's header rules, and
the MLflow server script by starting a real `mlflow server` from its command line."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import free_port, stop_group

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------------------------------- Ray


def _ray_prepared(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before validating
    validate_config(prepared)
    return prepared


def test_ray_cluster_yaml_passes_rays_validator():
    import jsonschema

    from acml_dist.config import load_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    prepared = _ray_prepared(config)
    assert prepared["head_node_type"] in prepared["available_node_types"]

    # The validator is live: an unknown key in a node type and a wrong type are both rejected.
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["gpus"] = 4
    with pytest.raises(jsonschema.ValidationError):
        _ray_prepared(broken)
    broken = copy.deepcopy(config)
    broken["max_workers"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        _ray_prepared(broken)

    # The synced checkout is this repository, and every node installs it from the mount point.
    ((mount, source),) = config["file_mounts"].items()
    assert (ROOT / source / "acml_dist").is_dir()
    assert any(mount in cmd for cmd in config["setup_commands"])

    # The cluster can host the training group of `cluster=ray` at full size.
    ray_group = load_config("train", ["cluster=ray"]).cluster
    gpu_nodes = [t for t in config["available_node_types"].values() if t["resources"].get("GPU", 0) > 0]
    slots = sum(
        t["max_workers"]
        * int(
            min(
                t["resources"]["GPU"] // ray_group.gpus_per_worker,
                t["resources"]["CPU"] // ray_group.cpus_per_worker,
            )
        )
        for t in gpu_nodes
    )
    assert slots >= ray_group.train_workers


# ----------------------------------------------------------------------------------------------- KubeRay

# The part of the RayJob CRD (ray.io/v1, KubeRay >= 1.1) this manifest uses: required fields and types
# as the CRD's openAPIV3Schema states them (spec.entrypoint required; rayStartParams string -> string;
# replicas int32; a worker group needs groupName and template; a head group needs template).
_POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}
_START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}
RAYJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["entrypoint", "rayClusterSpec"],
            "properties": {
                "entrypoint": {"type": "string", "minLength": 1},
                "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                "backoffLimit": {"type": "integer", "minimum": 0},
                "runtimeEnvYAML": {"type": "string"},
                "rayClusterSpec": {
                    "type": "object",
                    "required": ["headGroupSpec"],
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "enableInTreeAutoscaling": {"type": "boolean"},
                        "headGroupSpec": {
                            "type": "object",
                            "required": ["template"],
                            "properties": {"rayStartParams": _START_PARAMS, "template": _POD_TEMPLATE},
                        },
                        "workerGroupSpecs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["groupName", "template"],
                                "properties": {
                                    "groupName": {"type": "string", "minLength": 1},
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 0},
                                    "rayStartParams": _START_PARAMS,
                                    "template": _POD_TEMPLATE,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _pod_templates(job: dict) -> dict[str, dict]:
    spec = job["spec"]["rayClusterSpec"]
    templates = {"head": spec["headGroupSpec"]["template"]}
    templates.update({g["groupName"]: g["template"] for g in spec.get("workerGroupSpecs", [])})
    return templates


def _validate_pod_template(name: str, template: dict) -> None:
    import kubernetes_validate

    # A RayJob's pod templates are core/v1 PodTemplateSpecs: validate them as the API server would, strictly
    # (unknown fields rejected), wrapped in a PodTemplate object that kubernetes-validate knows.
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}
    kubernetes_validate.validate(wrapper, "1.30.0", strict=True)


def test_kuberay_rayjob_matches_crd_and_pod_schema():
    import jsonschema
    import kubernetes_validate

    from acml_dist.config import load_config

    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    jsonschema.validate(job, RAYJOB_SCHEMA)
    yaml.safe_load(job["spec"]["runtimeEnvYAML"])  # a YAML document inside the YAML

    for name, template in _pod_templates(job).items():
        _validate_pod_template(name, template)
        for container in template["spec"]["containers"]:
            assert container["image"], name
    for group in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]

    # The entrypoint runs the Ray job with overrides that compose against the real pretrain schema.
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "python" and argv[1].endswith("cluster/pretrain.py")
    cfg = load_config("pretrain", argv[2:])
    assert cfg.cluster.address == "auto"
    # ... and the GPU worker pods can host the training ranks of that config.
    groups = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups]
    gpus = sum(g["maxReplicas"] * int(lim.get("nvidia.com/gpu", 0)) for g, lim in zip(groups, limits))
    assert gpus >= cfg.cluster.train_workers * cfg.cluster.gpus_per_worker

    # The checks are live: a misspelt container field and a missing entrypoint are rejected.
    head = copy.deepcopy(job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])
    head["spec"]["containers"][0]["imagePullPolcy"] = "IfNotPresent"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_pod_template("head", head)
    broken = copy.deepcopy(job)
    del broken["spec"]["entrypoint"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RAYJOB_SCHEMA)


# ------------------------------------------------------------------------------------------------- SLURM

# sbatch options the script may use (long forms, from the sbatch manual) and the shape of their values.
SBATCH_OPTIONS = {
    "job-name": r"[\w.-]+",
    "nodes": r"\d+(-\d+)?",
    "ntasks-per-node": r"\d+",
    "gpus-per-node": r"([\w-]+:)?\d+",
    "cpus-per-task": r"\d+",
    "mem": r"\d+[KMGT]?",
    "exclusive": None,
    "time": r"(\d+-)?\d+(:\d{2}){0,2}",
    "output": r"\S+",
    "error": r"\S+",
    "partition": r"[\w,-]+",
    "account": r"[\w-]+",
}


def sbatch_directives(text: str) -> list[str]:
    """#SBATCH lines as sbatch reads them: only those before the first command line count."""
    directives = []
    for line in text.splitlines()[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if stripped.startswith("#SBATCH"):
            directives.append(stripped[len("#SBATCH") :].split("#")[0].strip())
    return directives


def test_slurm_script_is_valid_bash_with_well_formed_directives():
    script = CLUSTER / "slurm" / "train.sbatch"
    for path in (script, CLUSTER / "slurm" / "launch_node.sh", CLUSTER / "multinode_local.sh"):
        subprocess.run(["bash", "-n", str(path)], check=True)
    text = script.read_text()
    assert text.startswith("#!/bin/bash")
    directives = sbatch_directives(text)
    # Every #SBATCH line of the file is in the header, where sbatch honours it.
    assert len(directives) == len(re.findall(r"^#SBATCH", text, flags=re.M)) >= 5
    seen = {}
    for directive in directives:
        match = re.fullmatch(r"--([a-z-]+)(?:=(\S+))?", directive)
        assert match, directive
        name, value = match.groups()
        assert name in SBATCH_OPTIONS, directive
        pattern = SBATCH_OPTIONS[name]
        assert (value is None) if pattern is None else bool(value and re.fullmatch(pattern, value)), directive
        seen[name] = value
    assert seen["ntasks-per-node"] == "1"  # one launcher per node; it starts that node's ranks
    # The job builds its hostfile from the allocation and runs the per-node launcher under srun.
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text
    assert re.search(r"^srun .*\\\n\s+cluster/slurm/launch_node\.sh \"\$hostfile\" auto", text, flags=re.M)


def test_launch_node_rejects_bad_node_rank(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode-a slots=1\nnode-b slots=1\n")
    launcher = str(CLUSTER / "slurm" / "launch_node.sh")
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        [launcher, str(hostfile), "2", "127.0.0.1", "29500"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2 and "outside 0..1" in out.stderr
    out = subprocess.run(
        [launcher, str(hostfile), "auto", "127.0.0.1", "29500"],
        env={**env, "SLURMD_NODENAME": "node-c"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "node-c is not in" in out.stderr


# ------------------------------------------------------------------------------------------------ MLflow


def test_mlflow_script_builds_postgres_command_without_password():
    script = CLUSTER / "mlflow" / "start_server.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MLFLOW_"))}
    env.update(
        PGHOST="db.internal",
        PGUSER="mlflow",
        PGPASSWORD="s3cret",
        PGDATABASE="tracking",
        MLFLOW_ARTIFACTS_DESTINATION="s3://acml/artifacts",
    )
    out = subprocess.run(
        [str(script), "--print-command"], env=env, capture_output=True, text=True, check=True
    )
    argv = shlex.split(out.stdout)
    assert argv[:2] == ["mlflow", "server"]
    store = "postgresql+psycopg2://mlflow@db.internal:5432/tracking"
    assert argv[argv.index("--backend-store-uri") + 1] == store
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://acml/artifacts"
    assert "--serve-artifacts" in argv and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "s3cret" not in out.stdout
    # mlflow's own (click) parser accepts the command line.
    from mlflow.cli import cli

    ctx = cli.commands["server"].make_context("server", argv[2:])
    assert ctx.params["backend_store_uri"] == store
    assert ctx.params["serve_artifacts"] is True
    # Without a store or an artifact destination it refuses to start.
    del env["PGHOST"]
    out = subprocess.run([str(script)], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "MLFLOW_BACKEND_STORE_URI" in out.stderr


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    # Own session: the test stops the whole process tree (gunicorn/uvicorn workers included).
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            assert time.time() < deadline, f"{url} did not come up: {log.read_text()[-4000:]}"
            time.sleep(0.5)


def test_mlflow_script_serves_artifacts_from_an_object_store(tmp_path):
    """The production shape: the server alone holds the object-store credentials and proxies artifacts.
    The object store is a real S3 endpoint on 127.0.0.1 (moto's server); the client has no AWS keys."""
    import boto3
    import mlflow

    s3_port, port = free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    key, secret = "acml-test", "acml-test-secret"
    creds = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MLFLOW_", "AWS_"))}
    s3 = _start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], base, tmp_path / "s3.log")
    server = None
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{s3_url}/moto-api/", s3, tmp_path / "s3.log", timeout=60)
        bucket = boto3.client(
            "s3",
            endpoint_url=s3_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )
        bucket.create_bucket(Bucket="acml-mlflow")
        env = {
            **base,
            **creds,
            "MLFLOW_BIN": str(BIN / "mlflow"),
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "MLFLOW_ARTIFACTS_DESTINATION": "s3://acml-mlflow/artifacts",
            "MLFLOW_S3_ENDPOINT_URL": s3_url,
            "MLFLOW_PORT": str(port),
            "MLFLOW_WORKERS": "1",
        }
        server = _start([str(CLUSTER / "mlflow" / "start_server.sh")], env, tmp_path / "server.log")
        _wait_http(f"{url}/health", server, tmp_path / "server.log")

        client = mlflow.MlflowClient(tracking_uri=url)
        run = client.create_run(client.create_experiment("cluster-check"))
        client.log_metric(run.info.run_id, "loss", 0.5)
        note = tmp_path / "note.txt"
        note.write_text("through the server")
        client.log_artifact(run.info.run_id, str(note))
        # The run's artifacts are addressed through the server, and landed in the bucket.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="acml-mlflow")["Contents"]]
        assert keys == [f"artifacts/{run.info.experiment_id}/{run.info.run_id}/artifacts/note.txt"]
        body = bucket.get_object(Bucket="acml-mlflow", Key=keys[0])["Body"].read()
        assert body == b"through the server"
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["note.txt"]
        assert client.get_run(run.info.run_id).data.metrics["loss"] == 0.5
    finally:
        if server is not None:
            stop_group(server)
        stop_group(s3)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/health", timeout=2)
