#!/bin/bash
# Ablations at the 10-minute checkpoint's step (2,439), same seed and flags as the long run, one thread.
F=/tmp/ganeval/forge-new
export FORGE_THREADS=1
common="--data /usr/share/datasets/fashion-mnist --size 32 --ngf 32 --ndf 32 --ema 0.999 --steps 2439 --no-tensorboard"
date -u +"start mbstd %T"
$F train gan $common --minibatch-std on --out /tmp/ganeval/abl-mbstd
date -u +"start diffaugment %T"
$F train gan $common --diff-augment on --out /tmp/ganeval/abl-da
date -u +"done %T"
