#!/bin/bash
# The one 40-minute run: dcgan-cbn + EMA 0.999, ngf = ndf = 32, one thread; checkpoints copied at 10, 20, 40 minutes.
set -e
F=/tmp/ganeval/forge-train
OUT=/tmp/ganeval/long
export FORGE_THREADS=1
common="--data /usr/share/datasets/fashion-mnist --size 32 --ngf 32 --ndf 32 --ema 0.999 --out $OUT --epochs 100 --no-tensorboard"
date -u +"start %T"
$F train gan $common --minutes 10
cp $OUT/checkpoint.safetensors /tmp/ganeval/long-10min.safetensors; date -u +"10 min %T"
$F train gan $common --resume --minutes 10
cp $OUT/checkpoint.safetensors /tmp/ganeval/long-20min.safetensors; date -u +"20 min %T"
$F train gan $common --resume --minutes 20
cp $OUT/checkpoint.safetensors /tmp/ganeval/long-40min.safetensors; date -u +"40 min %T"
