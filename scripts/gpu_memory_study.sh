#!/usr/bin/env bash
# Issue 6's memory study: the model and its baselines trained side by side at equal budgets (same
# data, steps, windows, batch, schedule; same parameter budget) on ColorRooms retrace episodes, then
# `worldsim benchmark memory` on held-out retrace and reasoning episodes. One model per GPU.
# On a lent 4-GPU machine (results tarred into $OUT even when a step runs out of time):
#   . .gpu/setup.sh && bash scripts/gpu_memory_study.sh /tmp/study; tar czf $OUT/study.tgz -C /tmp study
# STEPS, LIMIT (seconds per training), CURRICULUM and EXTRA (more train flags, e.g. "--tbptt-chunk 256")
# change the budget; every model gets the same.
# Needs runs/data/colorrooms_{retrace,retrace_test,reasoning_test} (collect commands in docs/memory/README.md).
set -uo pipefail
out=${1:?output folder}
runs=/tmp/memory_study
mkdir -p "$runs" "$out"
STEPS=${STEPS:-1500}
LIMIT=${LIMIT:-400}           # seconds a training may take; a run cut short keeps its last checkpoint
CURRICULUM=${CURRICULUM:-0:64,300:256}
common=(--data runs/data/colorrooms_retrace --steps "$STEPS" --lr 1e-3 --warmup-steps 100 --batch-size 32
        --curriculum "$CURRICULUM" --aux-loss-weight 0.1 --aux-delay-max 64 --eval-every 0 --eval-at-end true
        --eval-windows 32 --eval-length 256 --eval-batch-size 8 --rollout-episodes 0 --save-every 250
        --keep-last 1 --progress false --tensorboard false --log-every 50)
train() {   # name baseline gpu
    CUDA_VISIBLE_DEVICES=$3 timeout "$LIMIT" python3 -m train.cli train "${common[@]}" --out "$runs/$1" \
        $(python3 scripts/baseline_flags.py "$2") ${EXTRA:-} > "$runs/$1.log" 2>&1
    echo "$1: exit $? after $SECONDS s" | tee -a "$out/status.txt"
}
train ours ours 0 &
train causal-256 causal:256 1 &
train mamba2 mamba2 2 &
train local local 3 &
train causal-32 causal:32 3 &
wait
models=()
for name in ours mamba2 local causal-32 causal-256; do
    path="$runs/$name/model"
    [ -d "$path" ] || path="$runs/$name/$(cat "$runs/$name/latest" 2>/dev/null)/model"   # latest: checkpoints/checkpoint-N
    [ -d "$path" ] && models+=(--model "$name=$path") || echo "$name: no model" | tee -a "$out/status.txt"
done
CUDA_VISIBLE_DEVICES=0 timeout "${BENCH_LIMIT:-150}" python3 -m train.cli benchmark memory --data runs/data/colorrooms_retrace_test \
    "${models[@]}" --episodes 64 --batch-size 16 --out "$out/retrace" > "$out/retrace.txt" 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout "${BENCH_LIMIT:-150}" python3 -m train.cli benchmark memory --data runs/data/colorrooms_reasoning_test \
    "${models[@]}" --episodes 64 --batch-size 16 --out "$out/reasoning" > "$out/reasoning.txt" 2>&1 &
wait
cat "$out/retrace.txt" "$out/reasoning.txt"
for name in ours mamba2 local causal-32 causal-256; do
    mkdir -p "$out/train/$name"
    cp "$runs/$name/metrics.jsonl" "$runs/$name/train_config.json" "$runs/$name.log" "$out/train/$name/" 2>/dev/null
done
