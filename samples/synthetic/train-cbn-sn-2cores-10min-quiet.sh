#!/bin/bash
# A second 10-minute run of the default class recipe on 2 threads, this time with the machine otherwise idle
# (no builds or helpers beside it): the flags of train-cbn-sn-2cores-40min.sh's first leg.
set -e
F=${FORGE:-.build/release/forge}
export FORGE_THREADS=2
date -u +"start %T"
$F train gan --data /usr/share/datasets/fashion-mnist --size 32 --ngf 32 --ndf 32 --out /tmp/gan10q/run --epochs 100 --no-tensorboard --minutes 10
date -u +"10 min %T"
$F eval gan --checkpoint /tmp/gan10q/run/checkpoint.safetensors --data /usr/share/datasets/fashion-mnist --out /tmp/gan10q/eval > /tmp/gan10q/eval.txt 2>&1
date -u +"eval done %T"
