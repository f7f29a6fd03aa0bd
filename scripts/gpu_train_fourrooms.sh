#!/usr/bin/env bash
# The trainer's GPU proof run: long explore episodes in FourRooms, then a curriculum run.
# On a CUDA machine, with the project installed: bash scripts/gpu_train_fourrooms.sh OUT_DIR
# The data and the run go to SCRATCH/fourrooms_explore and SCRATCH/fourrooms_run (SCRATCH defaults
# to /tmp); the metrics, run config and model are copied into OUT_DIR.
set -euo pipefail
out=${1:?output folder}
scratch=${SCRATCH:-/tmp}
data=$scratch/fourrooms_explore
run=$scratch/fourrooms_run
python3 -m train.cli collect --env MiniGrid-FourRooms-v0 --policy explore --max-steps 1000 \
    --episodes 320 --num-envs 16 --vector async --out "$data" --seed 0 2>&1 | tail -2
python3 -m train.cli train --data "$data" --out "$run" --steps "${STEPS:-1500}" \
    --lr 1e-3 --warmup-steps 100 --batch-size 32 --curriculum 0:64,500:256,1000:1024 \
    --tbptt-chunk 256 --context-fraction 0.5 --prefix-loss-weight 0.1 --context-min-length 256 \
    --aux-loss-weight 0.1 --aux-delay-max 64 --eval-every 500 --save-every 0 --keep-last 1 \
    --eval-windows 32 --eval-length 256 --eval-batch-size 8 \
    --rollout-episodes 16 --rollout-context 128 --rollout-horizon 128 --progress false
cp "$run/metrics.jsonl" "$run/train_config.json" "$out"/
cp "$run/model/model.safetensors" "$run/model/config.json" "$out"/
