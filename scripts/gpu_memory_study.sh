#!/usr/bin/env bash
# The memory study: the model and its baselines trained side by side at equal budgets (same
# data, steps, windows, batch, schedule; same parameter budget) on ColorRooms retrace episodes, then
# `worldsim benchmark memory` on held-out retrace and reasoning episodes. One model per GPU (4 GPUs).
# Runs go to RUNS (default /tmp/memory_study, a scratch folder). Run it again with the same RUNS
# folder and every training resumes from its last checkpoint, so a study can span several calls.
# Results are copied into OUT_DIR as they are made. On a CUDA machine, with the project installed:
#   timeout 560 bash scripts/gpu_memory_study.sh OUT_DIR
# DATA: DATA_ROOT/${DATA}_{retrace,retrace_test,reasoning_test}, DATA_ROOT defaulting to data
# (collect commands in docs/memory/README.md);
# FRAME: their frame size (7x7 egocentric, 13x13 for the map view of ColorRooms-13x13).
# STEPS, LIMIT (seconds of training this call), CURRICULUM, BATCH and EXTRA (more train flags, e.g.
# "--tbptt-chunk 256") set the budget, the same for every model; BENCH=0 skips the benchmark; TASKS the
# memory tasks benchmarked (default "retrace reasoning"). With fewer GPUs, models share them.
# ONLY="ours-blocks4 ours-blocks4-framedrop" trains and benchmarks just those models, one per GPU in
# turn; ours-blocks4-framedrop is ours-blocks4 trained with --attention-frame-dropout 0.5.
set -uo pipefail
out=${1:?output folder}
runs=${RUNS:-/tmp/memory_study}
mkdir -p "$runs" "$out"
DATA=${DATA:-colorrooms}
DATA_ROOT=${DATA_ROOT:-data}
FRAME=${FRAME:-7x7}
STEPS=${STEPS:-1500}
LIMIT=${LIMIT:-400}           # a run cut short keeps its last checkpoint, and resumes from it next call
CURRICULUM=${CURRICULUM:-0:64,300:256}
MODELS=(ours mamba2 local causal-32 causal-256 ours-blocks4)
common=(--steps "$STEPS" --lr 1e-3 --warmup-steps 100 --batch-size "${BATCH:-32}"
        --curriculum "$CURRICULUM" --aux-loss-weight 0.1 --aux-delay-max 64 --eval-every 0 --eval-at-end true
        --eval-windows 32 --eval-length 256 --eval-batch-size 8 --rollout-episodes 0 --save-every 100
        --keep-last 1 --progress false --tensorboard false --log-every 50)
model_flags() {   # name -> the model's flags
    case $1 in
        causal-*) python3 scripts/baseline_flags.py "causal:${1#causal-}" "$FRAME" ;;
        ours-blocks4) echo "--model.block_sizes $FRAME,4x4,$FRAME,4x4" ;;   # the block-size ablation
        ours-blocks4-framedrop) echo "--model.block_sizes $FRAME,4x4,$FRAME,4x4 --attention-frame-dropout 0.5" ;;
        *) python3 scripts/baseline_flags.py "$1" "$FRAME" ;;
    esac
}
GPUS=$(nvidia-smi -L | wc -l)
train() {   # name gpu (taken modulo the GPUs there are)
    local run="$runs/$1" start=(--data "$DATA_ROOT/${DATA}_retrace" --out "$runs/$1" $(model_flags "$1"))
    [ -f "$run/latest" ] && start=(--resume "$run")
    CUDA_VISIBLE_DEVICES=$(($2 % GPUS)) timeout "$LIMIT" python3 -m train.cli train "${start[@]}" "${common[@]}" ${EXTRA:-} \
        >> "$run.log" 2>&1
    echo "$1: exit $? after $SECONDS s, at $(cat "$run/latest" 2>/dev/null)" | tee -a "$out/status.txt"
    mkdir -p "$out/train/$1"
    cp "$run/metrics.jsonl" "$run/train_config.json" "$run.log" "$out/train/$1/" 2>/dev/null
}
if [ -n "${ONLY:-}" ]; then
    MODELS=($ONLY)
    for i in "${!MODELS[@]}"; do train "${MODELS[$i]}" "$i" & done
else
    train ours 0 &
    train causal-256 1 &
    train mamba2 2 &
    train ours-blocks4 2 &
    train local 3 &
    train causal-32 3 &
fi
wait
[ "${BENCH:-1}" = 0 ] && exit 0
models=()
for name in "${MODELS[@]}"; do
    path="$runs/$name/model"
    [ -d "$path" ] || path="$runs/$name/$(cat "$runs/$name/latest" 2>/dev/null)/model"   # latest: checkpoints/checkpoint-N
    [ -d "$path" ] && models+=(--model "$name=$path") || echo "$name: no model" | tee -a "$out/status.txt"
done
bench() {   # task gpu
    CUDA_VISIBLE_DEVICES=$(($2 % GPUS)) timeout "${BENCH_LIMIT:-150}" python3 -m train.cli benchmark memory \
        --data "$DATA_ROOT/${DATA}_$1_test" "${models[@]}" --episodes "${BENCH_EPISODES:-32}" \
        --batch-size "${BENCH_EPISODES:-32}" --out "$out/$1" > "$out/$1.txt" 2>&1
}
gpu=0
for task in ${TASKS:-retrace reasoning}; do
    bench "$task" $gpu &
    gpu=$((gpu + 1))
done
wait
for task in ${TASKS:-retrace reasoning}; do cat "$out/$task.txt"; done
