#!/usr/bin/env bash
# The small multimodal ACML run of EVALUATION.md ("Multimodal ACML over sparse modalities"), on embedded
# defaults: N MOSES molecules; rxnfp + Morgan on every molecule; csp5-predicted 13C and 1H for a random
# NMR fraction; in-silico MS (scripts/multimodal_inputs.py) for an MS fraction; the three spectrum teachers
# trained here and registered; ACML on 2 DeepSpeed ranks (gloo) over every modality each molecule has;
# evaluation per modality. Each stage resumes / skips what is done.
#   N=3000 NMR=0.15 MS=0.1 STEPS=400 bash scripts/multimodal_small.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-mm_small}; N=${N:-3000}; NMR=${NMR:-0.15}; MS=${MS:-0.1}; STEPS=${STEPS:-400}
EPOCHS=${EPOCHS:-30}; PY=${PY:-.venv/bin/python}; ACML=${ACML:-.venv/bin/acml}
RUNS=runs/$NAME
mkdir -p "$RUNS"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/$RUNS/mlflow.db}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DS_ACCELERATOR=cpu
t() { local s=$SECONDS; "$@"; echo "== $(( SECONDS - s )) s: $*" | tee -a "$RUNS/timings.txt"; }

t $ACML featurize name=$NAME data=moses_demo data.limit=$N
t $ACML embed name=$NAME teachers=smiles_fp
t $PY scripts/multimodal_inputs.py shards/$NAME $RUNS --nmr $NMR --ms $MS
t $ACML nmr-predict name=$NAME keys_file=$RUNS/nmr_keys.txt limit=0
t $ACML import-spectra name=$NAME files=[$RUNS/ms.mgf] modality=ms kind=ms pair_by=[smiles]
for m in nmr13c nmr1h ms; do
  t $ACML pretrain-teacher $m name=$NAME target=rxnfp epochs=$EPOCHS threads=2 output=$RUNS/teacher-$m
done
t $ACML embed name=$NAME teachers=multimodal
PORT=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
train=(name=$NAME output=$RUNS/train runs_root=$RUNS teachers=multimodal model=gin_small
       trainer.micro_batch=64 trainer.max_steps=$STEPS trainer.log_every=20 trainer.num_workers=0)
s=$SECONDS
for r in 1 0; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
    $PY acml_dist/train.py "${train[@]}" > "$RUNS/train-rank$r.log" 2>&1 &
done
wait
echo "== $(( SECONDS - s )) s: train 2 ranks" | tee -a "$RUNS/timings.txt"
t $ACML evaluate model=$RUNS/train/model name=$NAME teachers=multimodal output=$RUNS/evaluation \
  eval.property_datasets=[] eval.attributions=0 eval.embedding_map=false
