#!/usr/bin/env bash
# The native PPO trained in a shipped model's dream on one GPU, then scored in the dream and in the
# real env (200 episodes each, sampled actions, seeds 10000...).
#
#   OUT=runs/native_ppo STEPS=20000000 NUM_ENVS=1024 scripts/gpu_native_ppo_dream.sh [ENV_ID]
set -euo pipefail
worldsim() { python3 -c "import sys; from train.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }   # without installing
ENV_ID=${1:-MiniGrid-DoorKey-8x8-v0}
OUT=${OUT:-runs/native_ppo}
STEPS=${STEPS:-20000000}
NUM_ENVS=${NUM_ENVS:-1024}
HYPERPARAMS=${HYPERPARAMS:-num_steps=64,minibatch_size=8192}
worldsim agent train --env "$ENV_ID" --in dream --algo native-ppo --num-envs "$NUM_ENVS" --steps "$STEPS" \
    --hyperparams "$HYPERPARAMS" --out "$OUT/agent"
for where in dream real; do
    worldsim agent eval --policy "$OUT/agent" --in "$where" --episodes 200 --seed 10000 \
        --out "$OUT/eval_$where.json"
done
