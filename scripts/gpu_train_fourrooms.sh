#!/usr/bin/env bash
# The trainer's GPU proof run (issue 3): long explore episodes in FourRooms, then a curriculum run.
# On the lent GPU: . .gpu/setup.sh && bash scripts/gpu_train_fourrooms.sh "$OUT"
set -euo pipefail
out=${1:?output folder}
data=/tmp/fourrooms_explore
python3 -m train.cli collect --env MiniGrid-FourRooms-v0 --policy explore --max-steps 1000 \
    --episodes 320 --num-envs 16 --vector async --out "$data" --seed 0 2>&1 | tail -2
python3 -m train.cli train --data "$data" --out /tmp/fourrooms_run --steps "${STEPS:-1500}" \
    --lr 1e-3 --warmup-steps 100 --batch-size 32 --curriculum 0:64,500:256,1000:1024 \
    --tbptt-chunk 256 --context-fraction 0.5 --prefix-loss-weight 0.1 --context-min-length 256 \
    --aux-loss-weight 0.1 --aux-delay-max 64 --eval-every 500 --save-every 0 --keep-last 1 \
    --eval-windows 32 --eval-length 256 --eval-batch-size 8 \
    --rollout-episodes 16 --rollout-context 128 --rollout-horizon 128 --progress false
cp /tmp/fourrooms_run/metrics.jsonl /tmp/fourrooms_run/train_config.json "$out"/
cp /tmp/fourrooms_run/model/model.safetensors /tmp/fourrooms_run/model/config.json "$out"/
