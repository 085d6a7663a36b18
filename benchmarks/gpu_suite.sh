#!/usr/bin/env bash
# GPU readiness: one prepared script that, on a CUDA machine, runs the CUDA
# tests and measures bf16 training throughput per method against a raw torch
# loop (and lightly where installed), extraction throughput against a raw
# torch inference loop, and faiss GPU search where faiss has GPU support
# ("not measured" with the reason otherwise), writing ONE JSON:
# $OUT/gpu_suite.json (or ./gpu-results/gpu_suite.json). What each figure
# means: benchmarks/gpu_suite.py's docstring.
#
# Target: Python 3.12, torch 2.11, torchvision 0.26, no network; under 8
# minutes on one H200 with the defaults (about 4 by the budget below). Two steps:
#
#   bash benchmarks/gpu_suite.sh prepare   # here: gpu_contrastive.sh's prepare
#       (cifar10_test.npz into .gpu/data, lightly's wheel into .gpu/whl; .gpu/
#       is ignored by git, about 30 MB, within the 64 MiB carry limit). Without
#       network the wheel is skipped and the lightly rows read "not measured".
#   bash benchmarks/gpu_suite.sh run       # there, with .gpu carried:
#       installs featurekit (and the wheel, if any) with --no-deps --no-index
#       into /tmp/site and runs benchmarks/gpu_suite.py.
#
# Budgets through the environment: DEVICE (cuda), PRECISION (bf16), BACKBONE
# (resnet18), BATCH (256), STEPS (30), WARMUP (5), N (20000 images extracted),
# FAISS_N (1000000), FAISS_QUERIES (10000), WORKERS (8), METHODS (all image
# methods), SITE (/tmp/site: where featurekit is installed). A tiny check of
# the script itself on a machine without a GPU:
#
#   DEVICE=cpu PRECISION=32 BACKBONE=small_cnn BATCH=32 STEPS=2 WARMUP=1 N=512 \
#       FAISS_N=20000 FAISS_QUERIES=100 bash benchmarks/gpu_suite.sh run
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
DATA_DIR=${DATA_DIR:-../shared/data}

prepare() {
    # The same data and wheel as the contrastive GPU benchmark: reuse its step.
    if ! bash benchmarks/gpu_contrastive.sh prepare; then
        echo "gpu_contrastive.sh prepare failed (no network for lightly's wheel?);" \
             "copying the data only" >&2
        mkdir -p "$GPU_DIR/data"
        cp "$DATA_DIR/cifar10_test.npz" "$GPU_DIR/data/"
    fi
    du -sh "$GPU_DIR"
}

run() {
    local out=${OUT:-gpu-results} site=${SITE:-/tmp/site}
    mkdir -p "$out" "$site"
    export PYTHONUNBUFFERED=1 PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    local wheels=()
    shopt -s nullglob
    wheels=("$GPU_DIR"/whl/*.whl)
    shopt -u nullglob
    python3 -m pip install -q --no-index --no-deps --no-compile --no-build-isolation \
        --target "$site" . "${wheels[@]}"
    local started=$SECONDS
    # shellcheck disable=SC2086  # METHODS is a list of words
    python3 benchmarks/gpu_suite.py --device "${DEVICE:-cuda}" --precision "${PRECISION:-bf16}" \
        --backbone "${BACKBONE:-resnet18}" --batch-size "${BATCH:-256}" \
        --steps "${STEPS:-30}" --warmup "${WARMUP:-5}" --num-workers "${WORKERS:-8}" \
        --n "${N:-20000}" --faiss-n "${FAISS_N:-1000000}" \
        --faiss-queries "${FAISS_QUERIES:-10000}" --data-dir "$GPU_DIR/data" \
        ${METHODS:+--methods $METHODS} --json "$out/gpu_suite.json" 2>&1 \
        | tee "$out/gpu_suite.txt"
    echo "total $((SECONDS - started)) s"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu_suite.sh prepare|run" >&2; exit 2 ;;
esac
