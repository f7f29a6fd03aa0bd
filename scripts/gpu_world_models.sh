#!/usr/bin/env bash
# Train the world models of the goal tasks on one CUDA GPU, all at once.
# Each argument is NAME=ENV_ID. Data is DATA_ROOT/NAME (DATA_ROOT defaults to data), or is collected
# there first: the scripted expert mixed with random actions, epsilon drawn per episode from 0..1, on
# every core. Runs go to SCRATCH/wm_NAME (SCRATCH defaults to /tmp); each model, its metrics and
# run config are copied into OUT_DIR/NAME. With the project installed:
#   bash scripts/gpu_world_models.sh OUT_DIR empty8=MiniGrid-Empty-8x8-v0 doorkey8=MiniGrid-DoorKey-8x8-v0
set -euo pipefail
out=${1:?output folder}; shift
steps=${STEPS:-1500}
data_root=${DATA_ROOT:-data}
scratch=${SCRATCH:-/tmp}
for pair in "$@"; do
    name=${pair%%=*}
    [ -f "$data_root/$name/manifest.json" ] || python3 -m train.cli collect --env "${pair#*=}" --policy expert \
        --epsilon "${EPSILON:-0:1}" --episodes "${EPISODES:-3000}" --num-envs "$(nproc)" --vector async --out "$data_root/$name" 2>&1 | tail -1
done
for pair in "$@"; do
    name=${pair%%=*}
    # d_model 128 x 4 layers: 1.9 M parameters, 7.7 MB of float32 weights (small enough to ship).
    python3 -m train.cli train --data "$data_root/$name" --out "$scratch/wm_$name" --steps "$steps" \
        --lr 1e-3 --warmup-steps 100 --batch-size 16 --curriculum "0:64,$((steps / 3)):256" \
        --aux-loss-weight 0.1 --aux-delay-max 32 --eval-every 0 --save-every 500 --keep-last 1 \
        --eval-windows 64 --eval-length 256 --eval-batch-size 16 \
        --rollout-episodes 32 --rollout-context 16 --rollout-horizon 64 --progress false \
        > "$out/train_$name.log" 2>&1 &
done
wait
for pair in "$@"; do
    name=${pair%%=*}
    mkdir -p "$out/$name"
    cp -r "$scratch/wm_$name/model" "$scratch/wm_$name/metrics.jsonl" "$scratch/wm_$name/train_config.json" "$out/$name/"
    tail -n 3 "$out/train_$name.log"
done
