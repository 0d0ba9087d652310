#!/usr/bin/env bash
# The multimodal ACML runs of EVALUATION.md ("Multimodal ACML over sparse modalities"), on embedded defaults:
# N molecules of DATA; rxnfp + Morgan on every molecule; `acml depict` images for a random IMAGES fraction;
# csp5-predicted 13C and 1H for a random NMR fraction; in-silico MS (scripts/multimodal_inputs.py) for an
# MS fraction; the image and spectrum teachers trained here and registered; ACML on 2 DeepSpeed ranks (gloo)
# over every modality each molecule has; evaluation per modality. Each stage resumes / skips what is done.
#   bash scripts/multimodal.sh                    # the small run: 3,000 molecules, minutes on 2 cores
#   NAME=mm100k DATA=moses N=100000 NMR=0.053 MS=0.05 IMAGES=0.55 STEPS=6000 MICRO=128 IMG_EPOCHS=10 \
#     bash scripts/multimodal.sh                  # the corpus of issue 14: >= 50k images, >= 5k 13C + 1H
# IMAGES=0 / MS=0 leave that modality out (and its teacher); NUCLEI=13C predicts 13C only (no 1H teacher).
# TRAIN_EXTRA="trainer.isomer_batches=true" adds overrides to the ACML run, TEACHER_EXTRA="teachers.nmr13c.path=
# models:/acml-teacher-nmr13cm/1" to the teachers of embed, train and evaluate; RUN=name keeps that run's model
# and evaluation apart (runs/NAME/train-RUN, runs/NAME/evaluation-RUN) beside earlier ones. TEACHERS=0 keeps
# the registered teachers (`models:/acml-teacher-<m>/latest`) instead of training new versions: runs compared
# with each other then share their teachers and embedding caches.
# Raising NMR= or IMAGES= on a finished run draws a superset of its keys (same seed), so `acml nmr-predict`
# and `acml depict` compute only the new molecules; the teachers are then retrained on all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-mm_small}; DATA=${DATA:-moses_demo}; N=${N:-3000}; NMR=${NMR:-0.15}; MS=${MS:-0.1}
IMAGES=${IMAGES:-0.5}; STEPS=${STEPS:-400}; MICRO=${MICRO:-64}; EPOCHS=${EPOCHS:-30}; IMG_EPOCHS=${IMG_EPOCHS:-12}
NUCLEI=${NUCLEI:-13C,1H}; RUN=${RUN:+-$RUN}; read -r -a TRAIN_EXTRA <<< "${TRAIN_EXTRA:-}"
read -r -a teacher_args <<< "${TEACHER_EXTRA:-}"  # teacher overrides for embed, train and evaluate
PY=${PY:-.venv/bin/python}; ACML=${ACML:-.venv/bin/acml}
RUNS=runs/$NAME
mkdir -p "$RUNS"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/$RUNS/mlflow.db}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DS_ACCELERATOR=cpu
t() { local s=$SECONDS; "$@"; echo "== $(( SECONDS - s )) s: $*" | tee -a "$RUNS/timings.txt"; }

t $ACML featurize name=$NAME data=$DATA data.limit=$N
t $ACML embed name=$NAME teachers=smiles_fp
t $PY scripts/multimodal_inputs.py shards/$NAME $RUNS --nmr $NMR --ms $MS --images $IMAGES
t $ACML nmr-predict name=$NAME keys_file=$RUNS/nmr_keys.txt limit=0 "nuclei=[$NUCLEI]"
modalities=(nmr13c)
if [[ $NUCLEI == *1H* ]]; then modalities+=(nmr1h); else teacher_args+=("~teachers.nmr1h"); fi
if [ -s "$RUNS/ms.mgf" ]; then
  t $ACML import-spectra name=$NAME files=[$RUNS/ms.mgf] modality=ms kind=ms pair_by=[smiles]
  modalities+=(ms)
else
  teacher_args+=("~teachers.ms")
fi
if [ "$(wc -l < "$RUNS/image_keys.txt")" -gt 0 ]; then
  t $ACML depict name=$NAME keys_file=$RUNS/image_keys.txt limit=0
  # held out: 10% of the depictions (a pool of 1,000 needs >= 10,000 of them)
  [ "${TEACHERS:-1}" = 0 ] || t $ACML pretrain-teacher image name=$NAME target=rxnfp epochs=$IMG_EPOCHS \
    image_width=16 image_resolution=64 batch_size=128 lr=2e-3 val_fraction=0.1 threads=2 output=$RUNS/teacher-image
else
  teacher_args+=("~teachers.image")
fi
for m in "${modalities[@]}"; do
  [ "${TEACHERS:-1}" = 0 ] ||
    t $ACML pretrain-teacher $m name=$NAME target=rxnfp epochs=$EPOCHS threads=2 output=$RUNS/teacher-$m
done
t $ACML embed name=$NAME teachers=multimodal "${teacher_args[@]}"
PORT=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
train=(name=$NAME output=$RUNS/train$RUN runs_root=$RUNS teachers=multimodal "${teacher_args[@]}" model=gin_small
       trainer.micro_batch=$MICRO trainer.max_steps=$STEPS trainer.log_every=20 trainer.num_workers=0
       "${TRAIN_EXTRA[@]}")
s=$SECONDS
for r in 1 0; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
    $PY acml_dist/train.py "${train[@]}" > "$RUNS/train$RUN-rank$r.log" 2>&1 &
done
wait
echo "== $(( SECONDS - s )) s: train 2 ranks" | tee -a "$RUNS/timings.txt"
t $ACML evaluate model=$RUNS/train$RUN/model name=$NAME teachers=multimodal "${teacher_args[@]}" \
  output=$RUNS/evaluation$RUN eval.property_datasets=[] eval.attributions=0 eval.embedding_map=false
