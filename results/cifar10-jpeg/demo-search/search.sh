#!/usr/bin/env bash
# The demo-budget search (results.md): ResNet-20 and ResNet-32 under candidate schedules, one run after another,
# evaluated once at the end (fp32). Run from the repository root; every run takes 4-8 minutes on 2 CPU cores.
set -euo pipefail
D=${DATA:-../shared/data/cifar10-jpeg}
OUT=${OUT:-runs/demo-search}
run() {  # name model iterations seed overrides...
  local name=$1 model=$2 iters=$3 seed=$4; shift 4
  [ -f "$OUT/$name/summary.json" ] && return
  resnetlab train --model "$model" --data "$D" --scale "$(python3 -c "print($iters / 64000)")" --out "$OUT/$name" \
    --no-progress --set bn_batch=0 --set seed="$seed" --set eval_interval=1000000 --set log_interval=50 "$@"
}
run r20-cos2000-s0 resnet20 2000 0 --set lr_schedule=cosine
run r32-cos2000-s0 resnet32 2000 0 --set lr_schedule=cosine
run r20-step2000-s0 resnet20 2000 0 --set lr_schedule=step
run r32-step2000-s0 resnet32 2000 0 --set lr_schedule=step
run r20-cos2000-s1 resnet20 2000 1 --set lr_schedule=cosine
run r20-wcos2000-s0 resnet20 2000 0 --set lr_schedule=cosine --set warmup_iters=200
run r32-wcos2000-s0 resnet32 2000 0 --set lr_schedule=cosine --set warmup_iters=200
# The chosen budget (quick) and its noise: the demo itself, then a second ResNet-20 seed.
resnetlab reproduce degradation --budget quick --data "$D"
resnetlab reproduce table6 --budget quick --data "$D" --only resnet20 --out results/cifar10-jpeg/table6-quick
