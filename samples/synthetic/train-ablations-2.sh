#!/bin/bash
# Ablations of SN, hinge and TTUR at the 10-minute checkpoint's step (2,439), on top of the run's recipe.
F=${FORGE:-.build/release/forge}   # the session ran a build of commit 7e8d054
export FORGE_THREADS=1
common="--data /usr/share/datasets/fashion-mnist --size 32 --ngf 32 --ndf 32 --ema 0.999 --steps 2439 --no-tensorboard"
ev() { $F eval gan --checkpoint /tmp/ganeval/$1/checkpoint.safetensors --data /usr/share/datasets/fashion-mnist --out /tmp/ganeval/$1/eval > /tmp/ganeval/eval-$1.txt 2>&1; }
date -u +"start ttur %T"; $F train gan $common --lr 1e-4 --lr-d 4e-4 --beta1 0 --beta2 0.9 --out /tmp/ganeval/abl-ttur > /tmp/ganeval/abl-ttur.log 2>&1; ev abl-ttur
date -u +"start sn %T"; $F train gan $common --spectral-norm on --out /tmp/ganeval/abl-sn > /tmp/ganeval/abl-sn.log 2>&1; ev abl-sn
date -u +"start hinge %T"; $F train gan $common --loss hinge --out /tmp/ganeval/abl-hinge > /tmp/ganeval/abl-hinge.log 2>&1; ev abl-hinge
date -u +"start stable %T"; $F train gan $common --recipe stable --out /tmp/ganeval/abl-stable > /tmp/ganeval/abl-stable.log 2>&1; ev abl-stable
date -u +"done %T"
