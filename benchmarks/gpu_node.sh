#!/usr/bin/env bash
# The GPU path on a bare CUDA node that has torch + PyG + numpy but none of our other dependencies (no Ray,
# no MLflow): wheels for deepspeed, hydra-core, omegaconf, antlr4, pydantic(+core), annotated-types,
# typing-inspection, hjson and rdkit in .whl/ (BENCHMARKS.md says how they were built), the rxnfp BERT in
# .gpu/rxnfp, a SMILES corpus in .gpu/corpus.csv.gz and the evaluation CSVs (leakage exclusion) in
# .gpu/datasets.
#
#   OUT=dir bash benchmarks/gpu_node.sh bench     # benchmarks/gpu.py + `trainer=gpu` runs (ZeRO 1, 2, online)
#   OUT=dir bash benchmarks/gpu_node.sh release   # featurise the corpus (process pool) + pretrain the encoder
#
# Environment: RELEASE_LIMIT (molecules, default 1200000), RELEASE_MINUTES (training budget, default 3.5),
# RELEASE_STEPS (schedule length, default 2000), RELEASE_BATCH (default 2048); TRAINER=cpu tries it on CPU.
set -euo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ ! -f /tmp/site/.installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    touch /tmp/site/.installed
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 ACML_DATA_CACHE=$PWD/.gpu/datasets
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false

# A copy of rxnfp's weights at teachers.rxnfp.path is tokenised like any user BERT (HF WordPiece, bare SMILES)
# unless told otherwise: these make it the offline default's teacher (regex tokens on "SMILES>>").
RXNFP_TOKENS=(+teachers.rxnfp.params.tokenizer=regex "+teachers.rxnfp.params.template='{}>>'")

train() {  # tag, overrides...: one `deepspeed acml_dist/train.py` run, its summary kept
    local tag=$1
    shift
    echo "== $tag: $*" | tee -a "$OUT/train_runs.txt"
    local t0=$SECONDS
    if deepspeed --num_gpus 1 acml_dist/train.py "trainer=${TRAINER:-gpu}" tracking.enabled=false "$@" >".gpu/$tag.log" 2>&1; then
        echo "exit 0 in $((SECONDS - t0)) s" >>"$OUT/train_runs.txt"
    else
        echo "FAILED (exit $?) in $((SECONDS - t0)) s" >>"$OUT/train_runs.txt"
    fi
    grep -E "step [0-9]+/|reached|Error|error" ".gpu/$tag.log" | tail -8 >>"$OUT/train_runs.txt" || true
    tail -22 ".gpu/$tag.log" >>"$OUT/train_runs.txt"
}

case "${1:-}" in
bench)
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } | tee "$OUT/gpu_bench.txt"
    rm -rf .gpu/ds
    python3 benchmarks/gpu.py --prepare .gpu/ds --smiles .gpu/corpus.csv.gz
    cp -r .gpu/rxnfp .gpu/ds/rxnfp
    python3 benchmarks/gpu.py --data .gpu/ds 2>&1 | grep -v -E "Warning|warn\(|^\s*$" | tail -40 | tee -a "$OUT/gpu_bench.txt"
    common=(shards=.gpu/ds "trainer.max_steps=${BENCH_STEPS:-150}" "trainer.micro_batch=${BENCH_BATCH:-1024}" trainer.num_workers=8
        trainer.warmup_steps=20 trainer.log_every=50 trainer.checkpoint_every=0)
    train zero1 "${common[@]}" teachers=smiles_fp output=.gpu/runs/zero1
    train zero2 "${common[@]}" teachers=smiles_fp trainer.zero_stage=2 output=.gpu/runs/zero2
    train online "${common[@]}" teachers=smiles_fp teachers.rxnfp.source=online teachers.rxnfp.path=.gpu/rxnfp \
        "${RXNFP_TOKENS[@]}" \
        "teachers.rxnfp.batch_size=${BENCH_BATCH:-1024}" output=.gpu/runs/online
    ;;
release)
    t0=$SECONDS
    python3 -m acml_dist.cli featurize data=file data.path=.gpu/corpus.csv.gz data.smiles_column=SMILES \
        "data.limit=${RELEASE_LIMIT:-1200000}" "data.exclude=[esol,freesolv,lipophilicity]" \
        "data.split_fractions=[0.98,0.01,0.01]" data.samples_per_shard=8192 cluster.address=processes \
        output=.gpu/corpus name=acml-release 2>&1 | tail -16 | tee "$OUT/release.txt"
    echo "featurise: $((SECONDS - t0)) s" | tee -a "$OUT/release.txt"
    train release shards=.gpu/corpus name=acml-release model=gin teachers=rxnfp teachers.rxnfp.source=online \
        teachers.rxnfp.path=.gpu/rxnfp "${RXNFP_TOKENS[@]}" "teachers.rxnfp.batch_size=${RELEASE_BATCH:-2048}" \
        "trainer.micro_batch=${RELEASE_BATCH:-2048}" "trainer.max_steps=${RELEASE_STEPS:-2000}" \
        "trainer.max_minutes=${RELEASE_MINUTES:-3.5}" trainer.warmup_steps=100 trainer.num_workers=8 \
        trainer.log_every=50 trainer.checkpoint_every=0 output=.gpu/runs/release
    cat "$OUT/train_runs.txt" >>"$OUT/release.txt"
    cp .gpu/corpus/manifest.json "$OUT/corpus_manifest.json"
    tar czf "$OUT/release.tgz" -C .gpu/runs/release model history.json loss_curve.png train_result.json
    ;;
*)
    echo "usage: OUT=dir bash benchmarks/gpu_node.sh bench|release" >&2
    exit 2
    ;;
esac
