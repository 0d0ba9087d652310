#!/usr/bin/env bash
# Two "nodes" on one machine: the multi-node recipe of cluster/slurm/ without a cluster.
#
#   cluster/multinode_local.sh [hydra overrides for acml_dist/train.py]
#
# Starts cluster/slurm/launch_node.sh twice, with node ranks 0 and 1, sharing one hostfile and a master on
# 127.0.0.1: two separate `deepspeed --no_ssh` launchers that form ONE job of 2 x NPROC_PER_NODE ranks
# (gloo on CPU), exactly as the SLURM script does with one launcher per real node. Exits non-zero if
# either node fails; on Ctrl-C or failure it stops both.
#
# Environment: NPROC_PER_NODE (ranks per node, default 1), MASTER_PORT (default 29531),
# ACML_MULTINODE_DIR (hostfile + per-node logs; default a new temp dir), PYTHON, DS_ACCELERATOR
# (default cpu here).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
nproc=${NPROC_PER_NODE:-1}
port=${MASTER_PORT:-29531}
workdir=${ACML_MULTINODE_DIR:-$(mktemp -d -t acml-multinode.XXXXXX)}
mkdir -p "$workdir"
export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}

# Host names are only keys here (--no_ssh): both "nodes" reach the master over loopback.
hostfile=$workdir/hostfile
printf 'node0 slots=%s\nnode1 slots=%s\n' "$nproc" "$nproc" >"$hostfile"

pids=()
group_alive() { kill -0 -- "-$1" 2>/dev/null; }
stop_all() {
  # Each launcher leads its own process group (set -m below): stop it with the ranks it started. DeepSpeed's
  # launch.py cleans up its ranks on TERM but can take a while to exit: give it 20 s, then KILL the group.
  local pid i
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for ((i = 0; i < 40; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do group_alive "$pid" && alive=1; done
    ((alive)) || return 0
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

set -m  # background jobs get their own process groups
for rank in 0 1; do
  "$here/slurm/launch_node.sh" "$hostfile" "$rank" 127.0.0.1 "$port" "$@" \
    >"$workdir/node$rank.log" 2>&1 &
  pids+=($!)
done
set +m
echo "multinode_local: 2 nodes x $nproc ranks, master 127.0.0.1:$port, logs in $workdir" >&2

status=0
remaining=("${pids[@]}")
# Poll the launchers; when one fails the other would hang in a collective, so stop it. (Polling with
# `kill -0` + `wait PID`, not `wait -n`: a launcher that bash has already reaped makes `wait -n` fail.)
while ((${#remaining[@]})); do
  still=()
  for pid in "${remaining[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then still+=("$pid"); continue; fi
    if wait "$pid"; then rc=0; else rc=$?; fi
    if ((rc != 0)) && ((status == 0)); then
      status=$rc
      stop_all
    fi
  done
  remaining=("${still[@]+"${still[@]}"}")
  if ((${#remaining[@]})); then sleep 1; fi
done
for rank in 0 1; do
  echo "----- node$rank ($workdir/node$rank.log, last lines)" >&2
  tail -n 20 "$workdir/node$rank.log" >&2
done
exit "$status"
