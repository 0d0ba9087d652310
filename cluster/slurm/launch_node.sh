#!/usr/bin/env bash
# One node's share of a multi-node DeepSpeed training job.
#
#   cluster/slurm/launch_node.sh HOSTFILE NODE_RANK MASTER_ADDR MASTER_PORT [hydra overrides for acml_dist/train.py]
#
# Every node runs this with the same HOSTFILE ("<name> slots=<ranks on that node>" per line, node 0 first),
# MASTER_ADDR (reachable address of node 0) and MASTER_PORT, and its own NODE_RANK; together they form one
# job of sum(slots) ranks. `deepspeed --no_ssh` starts only this node's ranks (no pdsh/ssh between nodes),
# which is what both the SLURM script (one srun task per node) and cluster/multinode_local.sh (two
# "nodes" on 127.0.0.1) need. NODE_RANK=auto looks up $SLURMD_NODENAME (else `hostname -s`) in HOSTFILE.
#
# Environment: PYTHON (interpreter with acml-dist installed; default python), DS_ACCELERATOR (cpu on
# machines without GPUs), ACML_TRAIN_SCRIPT (default acml_dist/train.py of this checkout).
set -euo pipefail

if [[ $# -lt 4 ]]; then
  echo "usage: $0 HOSTFILE NODE_RANK|auto MASTER_ADDR MASTER_PORT [overrides...]" >&2
  exit 2
fi
hostfile=$1 node_rank=$2 master_addr=$3 master_port=$4
shift 4
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON:-python}
script=${ACML_TRAIN_SCRIPT:-$repo/acml_dist/train.py}

[[ -f $hostfile ]] || { echo "launch_node: hostfile $hostfile not found" >&2; exit 2; }
nodes=$(grep -cEv '^[[:space:]]*(#|$)' "$hostfile")
if [[ $node_rank == auto ]]; then
  me=${SLURMD_NODENAME:-$(hostname -s)}
  line=$(grep -Ev '^[[:space:]]*(#|$)' "$hostfile" | awk -v me="$me" '$1 == me {print NR; exit}')
  [[ -n $line ]] || { echo "launch_node: node $me is not in $hostfile" >&2; exit 2; }
  node_rank=$((line - 1))
fi
if ! [[ $node_rank =~ ^[0-9]+$ ]] || ((node_rank >= nodes)); then
  echo "launch_node: node rank $node_rank outside 0..$((nodes - 1)) of $hostfile" >&2
  exit 2
fi

echo "launch_node: node $node_rank of $nodes, master $master_addr:$master_port, hostfile $hostfile" >&2
cd "$repo"
# --no_local_rank: train.py takes Hydra overrides only; the rank arrives as LOCAL_RANK/RANK in the env.
exec "$python" -u -m deepspeed.launcher.runner \
  --hostfile "$hostfile" --no_ssh --node_rank "$node_rank" \
  --master_addr "$master_addr" --master_port "$master_port" \
  --no_local_rank "$script" "$@"
