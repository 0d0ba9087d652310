#!/usr/bin/env bash
# The GPU path on a bare CUDA node that has torch + PyG + numpy but none of our other dependencies (no Ray,
# no MLflow): wheels for deepspeed, hydra-core, omegaconf, antlr4, pydantic(+core), annotated-types,
# typing-inspection, hjson and rdkit (rdkit/Contrib left out: 6 MB the 64 MiB carry cannot spare) in .whl/,
# the rxnfp BERT in .gpu/rxnfp (a copy of rxnfp/models/transformers/bert_pretrained, the offline default
# that the shipped release was trained and evaluated against), a SMILES corpus in
# .gpu/corpus.csv.gz, the evaluation CSVs (leakage exclusion) in .gpu/datasets, and the X libraries RDKit's
# drawing links (libX11, libXrender, libXext, libxcb, libXau, libXdmcp, libbsd, libmd) in .gpu/xlibs. Carry
# .whl and .gpu in every call: a carried path replaces the node's copy (outputs under .gpu included) and one
# left out is removed there, so run the phases that share outputs in one call.
# Building .whl (any x86-64 box with pip): `pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 -d .whl NAME==VERSION` per package (deepspeed: `DS_BUILD_OPS=0 pip wheel
# --no-deps --no-build-isolation deepspeed`); then rewrite the rdkit wheel without rdkit/Contrib/ (files and
# RECORD lines). .gpu/xlibs: `cp -L /lib/x86_64-linux-gnu/lib{X11.so.6,Xrender.so.1,Xext.so.6,xcb.so.1,
# Xau.so.6,Xdmcp.so.6,bsd.so.0,md.so.0} .gpu/xlibs/`.
#
#   OUT=dir bash benchmarks/gpu_node.sh bench     # benchmarks/gpu.py + `trainer=gpu` runs (ZeRO 1, online;
#                                                 # ZeRO 2 with BENCH_ZERO2=1)
#   OUT=dir bash benchmarks/gpu_node.sh release   # release-data (featurise the corpus, cache Morgan bits,
#                                                 # both in a process pool: cluster.address=processes), then
#                                                 # release-train (OGB schema, rxnfp online + Morgan cached);
#                                                 # timings in $OUT/release*.txt, the model in release.tgz
#   OUT=dir bash benchmarks/gpu_node.sh image     # the image teacher (benchmarks/image_teacher.py); IMAGE_MINUTES
#
# Environment: RELEASE_LIMIT (molecules, default 1000000), RELEASE_MINUTES (training wall budget,
# trainer.max_minutes, default 3: with ~90 s featurisation the whole `release` fits ~6 minutes on 16 cores),
# RELEASE_STEPS (cosine schedule length; default: what RELEASE_MINUTES holds at the rate of a `bench` online run
# on this node, else 1200), RELEASE_BATCH (default 2048), RELEASE_WORKERS (loader
# workers, default 8), EMBED_WORKERS (Morgan processes, default: every core), RELEASE_STEREO (stereoisomers
# written beside each molecule with unassigned stereo, `data.stereoisomers`, default 2; MOSES has no stereo,
# so without them the encoder's chirality rows never train; with them the Morgan teacher reads chirality,
# so isomers get told apart by both teachers; 0: the corpus as read, Morgan without chirality).
# Rehearsal on a CPU box: NO_INSTALL=1 uses the python on PATH as it is (no wheels installed), TRAINER=cpu.
set -euo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"

STEREO=${RELEASE_STEREO:-2}
MORGAN_ARGS=()
[ "$STEREO" = 0 ] || MORGAN_ARGS=("+teachers.morgan.params.chirality=true")

setup_env() {  # the cp312 wheels into /tmp/site (once per machine) unless NO_INSTALL=1; the shared env
    if [ "${NO_INSTALL:-0}" != 1 ] && [ ! -f /tmp/site/.installed ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        touch /tmp/site/.installed
    fi
    if [ "${NO_INSTALL:-0}" != 1 ]; then
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 ACML_DATA_CACHE=$PWD/.gpu/datasets
    export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
    # RDKit's drawing (depictions) links libX11 / libXrender, which a bare node lacks: copies in .gpu/xlibs
    if [ -d .gpu/xlibs ]; then export LD_LIBRARY_PATH=$PWD/.gpu/xlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; fi
}

# A copy of rxnfp's weights at teachers.rxnfp.path is tokenised like any user BERT (HF WordPiece, bare SMILES)
# unless told otherwise: these make it the offline default's teacher (regex tokens on "SMILES>>").
RXNFP_TOKENS=(+teachers.rxnfp.params.tokenizer=regex "+teachers.rxnfp.params.template='{}>>'")

train() {  # tag, overrides...: one `deepspeed acml_dist/train.py` run, its summary kept
    local tag=$1
    shift
    echo "== $tag: $*" | tee -a "$OUT/train_runs.txt"
    local t0=$SECONDS rc=0
    deepspeed --num_gpus 1 acml_dist/train.py "trainer=${TRAINER:-gpu}" tracking.enabled=false "$@" \
        >".gpu/$tag.log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        echo "exit 0 in $((SECONDS - t0)) s" >>"$OUT/train_runs.txt"
    else
        echo "FAILED (exit $rc) in $((SECONDS - t0)) s" >>"$OUT/train_runs.txt"
    fi
    grep -E "step [0-9]+/|reached|Error|error" ".gpu/$tag.log" | tail -8 >>"$OUT/train_runs.txt" || true
    tail -22 ".gpu/$tag.log" >>"$OUT/train_runs.txt"
    return "$rc"
}

case "${1:-}" in
bench)
    setup_env
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; df -h /dev/shm; } | tee "$OUT/gpu_bench.txt"
    rm -rf .gpu/ds
    python3 benchmarks/gpu.py --prepare .gpu/ds --smiles .gpu/corpus.csv.gz
    cp -r .gpu/rxnfp .gpu/ds/rxnfp
    python3 benchmarks/gpu.py --data .gpu/ds 2>&1 | grep -v -E "Warning|warn\(|^\s*$" | tail -40 | tee -a "$OUT/gpu_bench.txt"
    common=(shards=.gpu/ds "trainer.max_steps=${BENCH_STEPS:-150}" "trainer.micro_batch=${BENCH_BATCH:-1024}" trainer.num_workers=8
        trainer.warmup_steps=20 trainer.log_every=50 trainer.checkpoint_every=0)
    train zero1 "${common[@]}" teachers=smiles_fp output=.gpu/runs/zero1 || true
    if [ "${BENCH_ZERO2:-0}" = 1 ]; then
        train zero2 "${common[@]}" teachers=smiles_fp trainer.zero_stage=2 output=.gpu/runs/zero2 || true
    fi
    train online "${common[@]}" teachers=smiles_fp teachers.rxnfp.source=online teachers.rxnfp.path=.gpu/rxnfp \
        "${RXNFP_TOKENS[@]}" \
        "teachers.rxnfp.batch_size=${BENCH_BATCH:-1024}" output=.gpu/runs/online || true
    ;;
release-data)  # featurise the corpus + the Morgan cache (both resume); log: $OUT/release_data.txt
    setup_env
    log="$OUT/release_data.txt"
    t0=$SECONDS
    python3 -m acml_dist.cli featurize data=file data.path=.gpu/corpus.csv.gz data.smiles_column=SMILES \
        "data.limit=${RELEASE_LIMIT:-1000000}" "data.exclude=[esol,freesolv,lipophilicity]" \
        "data.split_fractions=[0.98,0.01,0.01]" data.samples_per_shard=8192 cluster.address=processes \
        "data.stereoisomers=$STEREO" \
        output=.gpu/corpus name=acml-release 2>&1 | tail -16 | tee -a "$log"
    echo "phase featurise: $((SECONDS - t0)) s" | tee -a "$log"
    t0=$SECONDS
    python3 -m acml_dist.cli embed shards=.gpu/corpus teachers=fingerprint cluster.address=processes \
        "${MORGAN_ARGS[@]}" \
        "cluster.embed_actors=${EMBED_WORKERS:-$(nproc)}" 2>&1 | tail -8 | tee -a "$log"
    echo "phase morgan: $((SECONDS - t0)) s" | tee -a "$log"
    ;;
release-train)  # pretrain on what release-data made; $OUT/release.txt, $OUT/release.tgz
    t0=$SECONDS
    setup_env
    : >"$OUT/train_runs.txt"
    { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } >>"$OUT/release.txt"
    rm -rf .gpu/runs/release  # a fresh run: no resume from an earlier try's checkpoint
    # The schedule's length: RELEASE_STEPS, else what the budget holds at the rate the `bench` online run
    # logged on this node (same route: rxnfp online), else 1200.
    steps=${RELEASE_STEPS:-}
    if [ -z "$steps" ] && [ -f .gpu/online.log ]; then  # the last logged window's rate (steady state)
        rate=$(grep -oE "step [0-9]+/[0-9]+ .* [0-9]+ mol/s" .gpu/online.log | tail -1 | grep -oE "[0-9]+ mol/s$" \
            | grep -oE "^[0-9]+" || true)
        if [ -n "$rate" ]; then
            steps=$(awk -v r="$rate" -v m="${RELEASE_MINUTES:-3}" -v b="${RELEASE_BATCH:-2048}" \
                'BEGIN { s = int(r * m * 60 / b); print (s < 200 ? 200 : s) }')
        fi
    fi
    steps=${steps:-1200}
    echo "schedule: $steps steps of ${RELEASE_BATCH:-2048}" | tee -a "$OUT/release.txt"
    rc=0
    train release shards=.gpu/corpus name=acml-release model=gin model.schema=ogb teachers=smiles_fp \
        teachers.rxnfp.source=online teachers.rxnfp.path=.gpu/rxnfp "${RXNFP_TOKENS[@]}" "${MORGAN_ARGS[@]}" \
        "teachers.rxnfp.batch_size=${RELEASE_BATCH:-2048}" \
        "trainer.micro_batch=${RELEASE_BATCH:-2048}" "trainer.max_steps=$steps" \
        "trainer.max_minutes=${RELEASE_MINUTES:-3}" trainer.warmup_steps=100 \
        "trainer.num_workers=${RELEASE_WORKERS:-8}" trainer.log_every=50 trainer.checkpoint_every=0 \
        output=.gpu/runs/release || rc=$?
    cat "$OUT/train_runs.txt" >>"$OUT/release.txt"
    echo "phase train: $((SECONDS - t0)) s (exit $rc)" | tee -a "$OUT/release.txt"
    cp .gpu/corpus/manifest.json "$OUT/corpus_manifest.json"
    cp .gpu/corpus/embeddings/morgan/manifest.json "$OUT/morgan_manifest.json"
    [ "$rc" = 0 ] || exit "$rc"
    tar czf "$OUT/release.tgz" -C .gpu/runs/release model history.json loss_curve.png train_result.json
    ;;
release)
    bash "$0" release-data
    bash "$0" release-train
    ;;
image)  # the image teacher (benchmarks/image_teacher.py) within IMAGE_MINUTES; $OUT/image_teacher(.txt)
    setup_env
    python3 benchmarks/image_teacher.py --smiles .gpu/corpus.csv.gz --rxnfp .gpu/rxnfp --device cuda \
        --molecules "${IMAGE_MOLECULES:-80000}" --width 48 --resolution 128 --epochs 60 --batch-size 512 \
        --lr 2e-3 --workers "$(nproc)" --max-minutes "${IMAGE_MINUTES:-2.35}" --reserve-s 8 \
        --save "$OUT/image_teacher" 2>&1 | grep -v -E "Warning|warn\(" | tail -40 | tee "$OUT/image_teacher.txt"
    ;;
*)
    echo "usage: OUT=dir bash benchmarks/gpu_node.sh bench|release|release-data|release-train|image" >&2
    exit 2
    ;;
esac
