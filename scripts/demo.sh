#!/usr/bin/env bash
# make demo: a local Ray head and an MLflow server (both on 127.0.0.1), the whole pipeline submitted as a
# Ray job on a MOSES subset, the final table, then a registry pull in a fresh process.
# `scripts/demo.sh --stop` (make demo-stop) stops whatever a demo left running.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
VENV_BIN=$ROOT/.venv/bin
export PATH=$VENV_BIN:$PATH           # the job's `python` is the one on the PATH of `ray start`
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
# The demo's Ray head runs with token authentication (anyone who reaches the dashboard port could run
# code otherwise). `ray start` does not create a token: it reads RAY_AUTH_TOKEN_PATH (or ~/.ray/auth_token,
# which exists only where Ray ran before). The demo keeps its own token in .demo/, created here, mode 600,
# so a fresh machine with an empty HOME works and nothing outside the repository is read or written.
export RAY_AUTH_MODE=token
RAY_PORT=${ACML_DEMO_RAY_PORT:-6390}
DASH_PORT=${ACML_DEMO_DASHBOARD_PORT:-8265}
MLFLOW_PORT=${ACML_DEMO_MLFLOW_PORT:-5000}
MLFLOW_URI=http://127.0.0.1:$MLFLOW_PORT

mkdir -p "$DEMO"
export RAY_AUTH_TOKEN_PATH=$DEMO/ray_auth_token
if [[ ! -s $RAY_AUTH_TOKEN_PATH ]]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' >"$RAY_AUTH_TOKEN_PATH")
fi

# The demo's Ray head only, as `ray stop --force` would (SIGKILL), but not every Ray on this machine: `ray
# stop` has no --address and would end a local Ray of another job or session too. The head's daemons name its
# temp dir, its client proxy names its port; the workers and agents are their children.
stop_ray() {
  local pids more pid dir
  dir=$(printf '%s' "$DEMO/ray/" | sed 's/[][\.*^$+?(){}|]/\\&/g')  # the path as a literal in the pattern
  pids=$(pgrep -f -- "$dir|ray\.util\.client\.server --address=[^ ]*:$RAY_PORT( |\$)" || true)
  more=$pids
  while [[ -n $more ]]; do
    more=$(for pid in $more; do pgrep -P "$pid" || true; done)
    pids="$pids $more"
  done
  [[ -z ${pids// /} ]] || kill -KILL $pids 2>/dev/null || true
}
stop_all() {
  stop_ray
  if [[ -f $DEMO/mlflow.pid ]]; then kill "$(cat "$DEMO/mlflow.pid")" 2>/dev/null || true; rm -f "$DEMO/mlflow.pid"; fi
}
if [[ ${1:-} == "--stop" ]]; then stop_all; echo "demo services stopped"; exit 0; fi

trap stop_ray EXIT

echo "== starting MLflow server on $MLFLOW_URI (SQLite store, local artifacts)"
if ! curl -sf "$MLFLOW_URI/health" >/dev/null 2>&1; then
  nohup mlflow server --backend-store-uri "sqlite:///$DEMO/mlflow.db" --artifacts-destination "$DEMO/mlartifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 >"$DEMO/mlflow.log" 2>&1 &
  echo $! >"$DEMO/mlflow.pid"
  for _ in $(seq 60); do curl -sf "$MLFLOW_URI/health" >/dev/null 2>&1 && break; sleep 1; done
  curl -sf "$MLFLOW_URI/health" >/dev/null || { echo "mlflow server did not start: see $DEMO/mlflow.log"; exit 1; }
fi

echo "== starting a local Ray head on 127.0.0.1 (2 CPUs, dashboard :$DASH_PORT)"
ray start --head --node-ip-address 127.0.0.1 --port "$RAY_PORT" --dashboard-host 127.0.0.1 \
  --dashboard-port "$DASH_PORT" --num-cpus "${ACML_DEMO_CPUS:-2}" --object-store-memory 500000000 \
  --temp-dir "$DEMO/ray" --disable-usage-stats >"$DEMO/ray-start.log" 2>&1 \
  || { cat "$DEMO/ray-start.log"; exit 1; }

START=$(date +%s)
echo "== submitting cluster/pretrain.py (embedded defaults: configs/pretrain.yaml, a MOSES subset)"
set +e
# Excluded: what is big and what may change while Ray packages the checkout. A file written during packaging
# (`make demo > demo.log` in the checkout) changes the package's hash between hashing and upload, and the job
# then fails with "Failed to download runtime_env file package".
EXCLUDES='[".venv", ".git", ".demo", "shards", "runs", "mlruns", ".torch_extensions", "*.pyc", "*.log",
  ".pytest_cache", ".ruff_cache", ".hypothesis", "*.egg-info"]'
ray job submit --address "http://127.0.0.1:$DASH_PORT" --working-dir . \
  --runtime-env-json "{\"excludes\": $EXCLUDES}" \
  -- python cluster/pretrain.py name=demo \
  shards_root="$ROOT/shards" runs_root="$ROOT/runs" cluster.address=auto \
  tracking.tracking_uri="$MLFLOW_URI" "$@"
STATUS=$?
set -e
echo "== job finished with status $STATUS after $(( $(date +%s) - START )) s"
[[ $STATUS -eq 0 ]] || { echo "the Ray job failed: see the log above"; exit "$STATUS"; }

echo "== a downstream user pulls models:/acml-gin@champion in a fresh process"
MLFLOW_TRACKING_URI=$MLFLOW_URI python - <<'PY'
import mlflow, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model("models:/acml-gin@champion")
out = model.predict(pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "not a smiles"]}))
emb = np.stack([e for e in out["embedding"] if e is not None])
print(f"embeddings: {emb.shape[0]} molecules x {emb.shape[1]} dims; first row starts {emb[0, :4].round(3).tolist()}")
print(f"errors: {out['error'].tolist()}")
PY
echo "== the released encoder (release/acml-gin-moses-1m, 1M MOSES molecules on an H200) into the same registry"
acml register-release tracking.tracking_uri="$MLFLOW_URI" runs_root="$ROOT/runs"
echo "   pull it with mlflow.pyfunc.load_model(\"models:/acml-gin-release@champion\")"
echo
echo "MLflow UI: $MLFLOW_URI   (still running; stop it with: make demo-stop)"
echo "Its registry from acml commands: export MLFLOW_TRACKING_URI=$MLFLOW_URI"
echo "  then e.g.: acml embed-smiles input=FILE output=OUT.parquet model=models:/acml-gin@champion"
echo "Shards: $ROOT/shards/demo   Runs: $ROOT/runs/demo   Evaluation report: $ROOT/runs/demo/evaluation"
