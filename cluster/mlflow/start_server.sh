#!/usr/bin/env bash
# Production MLflow tracking server for acml-dist: PostgreSQL backend store (runs, metrics, model registry)
# and an object-store artifact root (S3, or any S3-compatible store: MinIO, Ceph, R2), served through the
# tracking server (--serve-artifacts) so that training jobs need only MLFLOW_TRACKING_URI, no bucket keys.
#
#   PGHOST=db.internal PGUSER=mlflow PGPASSWORD=... PGDATABASE=mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=s3://acml-mlflow/artifacts \
#   MLFLOW_HOST=10.0.0.5 MLFLOW_ALLOWED_HOSTS=mlflow.internal,10.0.0.5 cluster/mlflow/start_server.sh
#
# Environment (all optional but the store and the artifact destination):
#   MLFLOW_BACKEND_STORE_URI   full SQLAlchemy URI; default built from PGHOST, PGPORT (5432), PGUSER,
#                              PGDATABASE (mlflow) as postgresql+psycopg2://USER@HOST:PORT/DB. The password is NOT
#                              put in the URI (it would show in `ps`): libpq reads PGPASSWORD or ~/.pgpass.
#   MLFLOW_ARTIFACTS_DESTINATION  s3://bucket/prefix (or gs://, wasbs://, a local dir for tests).
#   MLFLOW_S3_ENDPOINT_URL     S3-compatible endpoint (MinIO ...); AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
#                              or an instance role give the server (only the server) bucket access.
#   MLFLOW_HOST (127.0.0.1)    interface to bind. Loopback by default: bind a private address only behind
#                              a firewall or an authenticating reverse proxy (MLflow has no auth here).
#   MLFLOW_PORT (5000), MLFLOW_WORKERS (4), MLFLOW_ALLOWED_HOSTS (Host headers accepted; default: MLflow's
#   localhost + private IPs), MLFLOW_SERVER_ENABLE_JOB_EXECUTION (false: no background job workers).
#   MLFLOW_BIN (mlflow on PATH).
# Flags: --print-command prints the command line instead of starting the server.
# Server-side packages: mlflow, psycopg2-binary (PostgreSQL), boto3 (S3).
set -euo pipefail

print_only=false
if [[ ${1:-} == --print-command ]]; then print_only=true; fi

store=${MLFLOW_BACKEND_STORE_URI:-}
if [[ -z $store ]]; then
  if [[ -z ${PGHOST:-} || -z ${PGUSER:-} ]]; then
    echo "start_server: set MLFLOW_BACKEND_STORE_URI, or PGHOST and PGUSER (and PGPASSWORD) for PostgreSQL" >&2
    exit 2
  fi
  # Explicit driver: SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3, 2.0 to psycopg2.
  store="postgresql+psycopg2://${PGUSER}@${PGHOST}:${PGPORT:-5432}/${PGDATABASE:-mlflow}"
fi
artifacts=${MLFLOW_ARTIFACTS_DESTINATION:-}
if [[ -z $artifacts ]]; then
  echo "start_server: set MLFLOW_ARTIFACTS_DESTINATION (e.g. s3://bucket/mlflow-artifacts)" >&2
  exit 2
fi

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
cmd=(
  "${MLFLOW_BIN:-mlflow}" server
  --backend-store-uri "$store"
  --serve-artifacts --artifacts-destination "$artifacts"
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}"
  --workers "${MLFLOW_WORKERS:-4}"
)
if [[ -n ${MLFLOW_ALLOWED_HOSTS:-} ]]; then cmd+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS"); fi

if $print_only; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
echo "start_server: store ${store%%\?*}, artifacts $artifacts, http://${MLFLOW_HOST:-127.0.0.1}:${MLFLOW_PORT:-5000}" >&2
exec "${cmd[@]}"
