#!/bin/sh
# `make demo`: a class-conditional DCGAN on Fashion-MNIST for about two minutes, then a sample grid;
# then text from the shipped character-level Shakespeare model (checkpoints/shakespeare-char.safetensors).
# Environment: FORGE (the binary, default .build/release/forge, built if missing),
#              DEMO_MINUTES (default 2), DEMO_DATA (default /usr/share/datasets/fashion-mnist).
set -eu
cd "$(dirname "$0")/.."

DATA=${DEMO_DATA:-/usr/share/datasets/fashion-mnist}
MINUTES=${DEMO_MINUTES:-2}
FORGE=${FORGE:-.build/release/forge}

if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -e "$DATA/train-images-idx3-ubyte" ]; then
    echo "demo: $DATA is missing; installing Debian's dataset-fashion-mnist"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y dataset-fashion-mnist || { $SUDO apt-get update && $SUDO apt-get install -y dataset-fashion-mnist; }
fi

if [ ! -x "$FORGE" ]; then
    echo "demo: building forge (release)"
    swift build -c release
fi

# A fresh run each time (no --resume): about $MINUTES minutes, then a checkpoint and the grids. Widths
# 32 (the shipped model's) rather than the default 64: about three times the steps in two minutes,
# which is what turns the rows from grey blobs into garments of their class.
"$FORGE" train gan --data "$DATA" --size 32 --conditional on --ngf 32 --ndf 32 --minutes "$MINUTES" --out checkpoints/demo
# One row per class (10 classes x 8 columns) from the run's checkpoint.
"$FORGE" sample gan --checkpoint checkpoints/demo --count 80 --seed 1 --out samples/demo/grid.png

echo
echo "demo: sample grid (one row per class: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot)"
echo "      $(pwd)/samples/demo/grid.png"
echo "      the run folder: checkpoints/demo/ (checkpoint.safetensors, metrics.csv, loss.png, samples/latest.png)"

# The same grid from the shipped model (the same recipe trained for 40 minutes), for comparison.
"$FORGE" sample gan --count 80 --seed 1 --out samples/demo/shipped-grid.png
echo "demo: the same grid from the shipped 40-minute model (checkpoints/fashion-cgan.safetensors):"
echo "      $(pwd)/samples/demo/shipped-grid.png"

# The shipped char transformer: no training needed, `forge sample char` finds checkpoints/ by itself.
echo
echo "demo: 500 characters from the shipped Shakespeare char model (forge sample char --prompt ROMEO:)"
"$FORGE" sample char --prompt "ROMEO:" --length 500 --seed 1
