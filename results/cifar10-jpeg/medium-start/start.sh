#!/bin/bash
# The first 200 iterations of ResNet-56 at the medium budget's recipe (--scale 0.1, cosine, BN over 64), logged
# every 10 iterations, for each variant given as KEY=VALUE (e.g. seed=0 precision=fp32 warmup=on seed=1).
# Each run is stopped after its 20th log row; its metrics land in this folder as resnet56-KEY=VALUE.jsonl.
# Run from the repository root: bash results/cifar10-jpeg/medium-start/start.sh seed=0 precision=fp32 warmup=on seed=1
set -u
here=$(dirname "$0")
for v in "$@"; do
  out=$(mktemp -d)
  "${RESNETLAB:-.venv/bin/resnetlab}" train --model resnet56 --data ../shared/data/cifar10-jpeg --scale 0.1 --set lr_schedule=cosine \
    --set bn_batch=64 --set log_interval=10 --set eval_interval=100000 --set "$v" --out "$out/run" --no-progress \
    > "$out/log" 2>&1 &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    n=$(grep -c '"train"' "$out/run/metrics.jsonl" 2>/dev/null)
    [ "${n:-0}" -ge 20 ] && kill $pid
    sleep 2
  done
  cp "$out/run/metrics.jsonl" "$here/resnet56-$v.jsonl"
  cp "$out/run/config.json" "$here/resnet56-$v.config.json"
  rm -rf "$out"
done
