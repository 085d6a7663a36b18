#!/usr/bin/env bash
# The contrastive family's GPU variant: ResNet-18 (small-image stem), bf16,
# the full standard CIFAR-10 split, all four methods, against lightly.
#
# It runs on a CUDA machine without network or faiss (tested target: Python
# 3.12, torch 2.11, torchvision 0.26), in under 8 minutes with the defaults.
# Two steps:
#
#   bash benchmarks/gpu_contrastive.sh prepare   # here, with network or a pip cache:
#       copies cifar10_test.npz into .gpu/data and lightly's wheel (pure
#       Python, no dependencies needed for what the benchmark imports) into
#       .gpu/whl; .gpu/ is ignored by git, about 30 MB.
#   bash benchmarks/gpu_contrastive.sh run       # there, with .gpu carried:
#       installs featurekit (no deps, no index) and the wheel into /tmp/site,
#       runs the CUDA tests, the throughput part, the quality table and the
#       label-efficiency benchmark (with 1% labels), and writes their output
#       and JSON into $OUT (or ./gpu-results).
#
# Budgets can be changed through the environment: EPOCHS (quality, 10),
# SEEDS ("0 1 2"), SSL_EPOCHS (15), SUP_STEPS (600), DEVICE (cuda),
# PRECISION (bf16), BACKBONE (resnet18), N (8000). DEVICE=cpu with tiny
# budgets checks the script itself on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
DATA_DIR=${DATA_DIR:-../shared/data}

prepare() {
    mkdir -p "$GPU_DIR/data" "$GPU_DIR/whl"
    cp "$DATA_DIR/cifar10_test.npz" "$GPU_DIR/data/"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$GPU_DIR/whl" "lightly>=1.5"
    du -sh "$GPU_DIR"
}

run() {
    local out=${OUT:-gpu-results}
    mkdir -p "$out" /tmp/site
    export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-build-isolation \
        --target /tmp/site . "$GPU_DIR"/whl/*.whl
    local device=${DEVICE:-cuda} precision=${PRECISION:-bf16} backbone=${BACKBONE:-resnet18}
    local common=(--device "$device" --precision "$precision" --backbone "$backbone"
                  --data-dir "$GPU_DIR/data")
    python3 -c "import torch, featurekit; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    local started=$SECONDS
    # CUDA tests (the rest of the suite is CPU's business).
    python3 -m pytest -q -p no:cacheprovider tests -k cuda 2>&1 | tee "$out/cuda_tests.txt" || true
    python3 benchmarks/bench_lightly.py throughput "${common[@]}" --data cifar10 \
        --batch-size "${BATCH:-256}" --steps "${STEPS:-100}" --warmup "${WARMUP:-10}" \
        --num-workers "${WORKERS:-8}" --json "$out/throughput.json" 2>&1 | tee "$out/throughput.txt"
    echo "elapsed $((SECONDS - started)) s"
    python3 benchmarks/bench_lightly.py quality "${common[@]}" --data cifar10 \
        --n "${N:-8000}" --epochs "${EPOCHS:-10}" --batch-size "${BATCH:-256}" \
        --seeds ${SEEDS:-0 1 2} --methods simclr moco_v2 simsiam byol \
        --num-workers "${WORKERS:-8}" --json "$out/quality.json" 2>&1 | tee "$out/quality.txt"
    echo "elapsed $((SECONDS - started)) s"
    python3 benchmarks/bench_label_efficiency.py "${common[@]}" --fractions 0.01 0.1 1.0 \
        --ssl-epochs "${SSL_EPOCHS:-15}" --sup-steps "${SUP_STEPS:-600}" \
        --batch-size "${BATCH:-256}" --plot "$out/label_efficiency.png" \
        --json "$out/label_efficiency.json" 2>&1 | tee "$out/label_efficiency.txt"
    echo "total $((SECONDS - started)) s"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu_contrastive.sh prepare|run" >&2; exit 2 ;;
esac
