#!/usr/bin/env bash
# make bench: Forge against PyTorch, side by side (bench/run.py does the work).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/run.py "$@"
