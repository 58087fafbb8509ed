#!/usr/bin/env bash
# Forge's DCGAN step against PyTorch's (../shared/bench/ref_dcgan.py), alternating A B A B on 2 threads,
# each under /usr/bin/time -v for the max RSS. Usage: scripts/bench-gan.sh [32|64 ...] ; PAIRS=2 by default.
# Run it on a quiet machine: two benchmarks at once make both figures lie.
set -euo pipefail
cd "$(dirname "$0")/.."
FORGE=${FORGE:-.build/release/forge}
PY=${TORCH_PY:-/work/torch-venv/bin/python}
REF_DIR=${REF_DIR:-/work/shared/bench}
PAIRS=${PAIRS:-2}
SIZES=${*:-32 64}
for size in $SIZES; do
    if [ "$size" = 64 ]; then args="--warmup 3 --steps 5"; else args="--warmup 5 --steps 10"; fi
    for i in $(seq "$PAIRS"); do
        echo "== forge, size $size, pair $i"
        /usr/bin/time -v "$FORGE" bench gan --size "$size" --batch 64 $args 2>/tmp/forge-bench-time.txt | grep -v "^  round"
        grep "Maximum resident" /tmp/forge-bench-time.txt
        echo "== pytorch, size $size, pair $i"
        (cd "$REF_DIR" && /usr/bin/time -v "$PY" ref_dcgan.py --image "$size" --threads 2 $args 2>/tmp/torch-bench-time.txt | grep -v "^#" | tail -2)
        grep "Maximum resident" /tmp/torch-bench-time.txt
    done
done
