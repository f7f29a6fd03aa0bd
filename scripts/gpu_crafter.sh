#!/usr/bin/env bash
# Crafter from pixels on one CUDA GPU: a frame tokenizer, random-play data, a world model on it, the native
# PPO trained in its dream and scored in real Crafter (Crafter score with a bootstrap CI), beside the native
# PPO trained in real Crafter for as many real steps as the data holds. Needs `pip install crafter`.
#
#   OUT=runs/crafter scripts/gpu_crafter.sh
#
# Sizes are environment variables (defaults for an H200 host): EPISODES (random-play episodes, about 160
# steps each), TOKENIZER_STEPS, MODEL_STEPS, AGENT_STEPS (dream steps), NUM_ENVS (dream envs),
# EVAL_EPISODES, EVAL_STEPS (a step limit for evaluation episodes; Crafter's own is 10,000), HYPERPARAMS
# (the dream PPO's), and
# TRAIN_FLAGS / TOKENIZER_FLAGS (more flags, e.g. tiny sizes for a trial run on a CPU). Each stage is skipped
# when its output is there, so a killed run continues where it stopped.
set -euo pipefail
worldsim() { python3 -c "import sys; from train.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }   # without installing
ENV_ID=${ENV_ID:-CrafterReward-v1}
OUT=${OUT:-runs/crafter}
EPISODES=${EPISODES:-1000}
TOKENIZER_STEPS=${TOKENIZER_STEPS:-4000}
MODEL_STEPS=${MODEL_STEPS:-3000}
AGENT_STEPS=${AGENT_STEPS:-10000000}
NUM_ENVS=${NUM_ENVS:-1024}
EVAL_EPISODES=${EVAL_EPISODES:-32}
EVAL_STEPS=${EVAL_STEPS:-10000}
HYPERPARAMS=${HYPERPARAMS:-num_steps=64,minibatch_size=8192}
CORES=$(nproc)
mkdir -p "$OUT"
# 1. The tokenizer, on random-play frames; its report holds the held-out PSNR, SSIM and exact frames.
[ -f "$OUT/tokenizer/report.json" ] || worldsim tokenizer --env "$ENV_ID" --out "$OUT/tokenizer" \
    --steps "$TOKENIZER_STEPS" --progress false ${TOKENIZER_FLAGS:-} 2>&1 | tail -2
# 2. Random play, one process per core (a Crafter reset makes a world: about a second of CPU).
worldsim collect --env "$ENV_ID" --tokenizer "$OUT/tokenizer" --episodes "$EPISODES" --num-envs "$CORES" \
    --vector async --out "$OUT/data" 2>&1 | tail -1
REAL_STEPS=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['totals']['steps'])" "$OUT/data/manifest.json")
# 3. The world model (continued if a run was started).
if [ -f "$OUT/wm/train_config.json" ]; then
    worldsim train --resume "$OUT/wm" --progress false >> "$OUT/train.log" 2>&1
else
    worldsim train --data "$OUT/data" --out "$OUT/wm" --steps "$MODEL_STEPS" --lr 1e-3 --warmup-steps 100 \
        --batch-size 16 --curriculum "0:64" --aux-loss-weight 0.1 --eval-every 0 --save-every 500 --keep-last 1 \
        --rollout-episodes 16 --rollout-context 16 --rollout-horizon 64 --progress false ${TRAIN_FLAGS:-} \
        > "$OUT/train.log" 2>&1
fi
# A GIF of the dream beside real Crafter under the same random actions, from the same world.
[ -f "$OUT/dream_vs_real.gif" ] || worldsim play --checkpoint "$OUT/wm/model" --real --actions random:300 --seed 10000 \
    --record "$OUT/dream_vs_real.gif" --quiet
# 4. The native PPO in the dream, its episodes starting from the data's first frames (no real resets), and
#    the native PPO in real Crafter for the real steps the data cost.
[ -f "$OUT/agent_dream/agent.json" ] || worldsim agent train --env "$ENV_ID" --in dream --checkpoint "$OUT/wm/model" \
    --algo native-ppo --num-envs "$NUM_ENVS" --steps "$AGENT_STEPS" --starts "$OUT/data" \
    --hyperparams "$HYPERPARAMS" --out "$OUT/agent_dream" > "$OUT/agent_dream.log" 2>&1
[ -f "$OUT/agent_real/agent.json" ] || worldsim agent train --env "$ENV_ID" --in real --algo native-ppo \
    --num-envs 16 --steps "$REAL_STEPS" --out "$OUT/agent_real" > "$OUT/agent_real.log" 2>&1
# 5. Both scored in real Crafter on the same seeds.
for agent in dream real; do
    [ -f "$OUT/eval_$agent.json" ] || worldsim agent eval --policy "$OUT/agent_$agent" --in real \
        --episodes "$EVAL_EPISODES" --seed 10000 --max-episode-steps "$EVAL_STEPS" --out "$OUT/eval_$agent.json"
done
echo "real steps of data: $REAL_STEPS"
