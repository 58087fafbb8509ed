#!/bin/bash
# The goal's run: the default class recipe (auto = cbn-sn: conditional BN in G, spectral norm in D, EMA 0.999),
# ngf = ndf = 32, on 2 threads (both cores), wall-clock minutes; checkpoints copied at 10, 20 and 40 minutes.
# The trainer runs at nice -10 so that other work on the machine takes little of its time.
set -e
F=${FORGE:-/tmp/forge-gan}
OUT=/tmp/gan40/run
export FORGE_THREADS=2
common="--data /usr/share/datasets/fashion-mnist --size 32 --ngf 32 --ndf 32 --out $OUT --epochs 100 --no-tensorboard"
date -u +"start %T"
nice -n -10 $F train gan $common --minutes 10
cp $OUT/checkpoint.safetensors /tmp/gan40/10min.safetensors; date -u +"10 min %T"
nice -n -10 $F train gan $common --resume --minutes 10
cp $OUT/checkpoint.safetensors /tmp/gan40/20min.safetensors; date -u +"20 min %T"
nice -n -10 $F train gan $common --resume --minutes 20
cp $OUT/checkpoint.safetensors /tmp/gan40/40min.safetensors; date -u +"40 min %T"
