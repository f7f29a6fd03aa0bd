#!/usr/bin/env bash
# The same env, the same expert data, two world models: one on MiniGrid's symbolic view (the exact
# codec), one on its RGB view through a learned frame tokenizer; the native PPO trained in each dream
# and scored in the real env on the same seeds. On one CUDA GPU:
#
#   OUT=runs/rgb_vs_symbolic scripts/gpu_rgb_vs_symbolic.sh [ENV_ID]
#
# Sizes are environment variables (defaults for an H200): EPISODES, MODEL_STEPS, TOKENIZER_STEPS,
# AGENT_STEPS, NUM_ENVS, and TRAIN_FLAGS (more `worldsim train` flags, e.g. a smaller model for a
# trial run on a CPU: "--model.d_model=32 --model.n_layers=1 --curriculum 0:16"). Each stage is skipped when its output is already there, so a killed run
# continues where it stopped.
set -euo pipefail
worldsim() { python3 -c "import sys; from train.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }   # without installing
ENV_ID=${1:-MiniGrid-DoorKey-8x8-v0}
OUT=${OUT:-runs/rgb_vs_symbolic}
EPISODES=${EPISODES:-2500}
MODEL_STEPS=${MODEL_STEPS:-4500}
TOKENIZER_STEPS=${TOKENIZER_STEPS:-4000}
AGENT_STEPS=${AGENT_STEPS:-20000000}
NUM_ENVS=${NUM_ENVS:-1024}
CORES=$(nproc)
pids=()
mkdir -p "$OUT"
# 1. The tokenizer, on frames of the data's own policy (random play never shows the goal room); its report
#    holds the held-out PSNR, SSIM and exact frames.
[ -f "$OUT/tokenizer/report.json" ] || worldsim tokenizer --env "$ENV_ID" --out "$OUT/tokenizer" --policy expert --epsilon 0:0.6 \
    --steps "$TOKENIZER_STEPS" --progress false 2>&1 | tail -2
# 2. The same expert episodes (same seeds, same epsilon draws) recorded in both views, side by side.
for view in ego rgb; do
    worldsim collect --env "$ENV_ID" --view "$view" $([ "$view" = rgb ] && echo --tokenizer "$OUT/tokenizer") \
        --policy expert --epsilon 0:0.6 --episodes "$EPISODES" --num-envs $((CORES / 2)) --out "$OUT/data_$view" \
        2>&1 | tail -1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done      # set -e: a failed collection stops the run here
pids=()
# 3. Both world models at once (d_model 128, 4 layers: the shipped models' size and schedule).
for view in ego rgb; do
    if [ -f "$OUT/wm_$view/train_config.json" ]; then        # a run started before: continue it
        worldsim train --resume "$OUT/wm_$view" --progress false >> "$OUT/train_$view.log" 2>&1 &
        pids+=($!)
        continue
    fi
    worldsim train --data "$OUT/data_$view" --out "$OUT/wm_$view" --steps "$MODEL_STEPS" \
        --lr 1e-3 --warmup-steps 100 --batch-size 16 --curriculum "0:64,$((MODEL_STEPS / 3)):256" \
        --aux-loss-weight 0.1 --aux-delay-max 32 --eval-every 0 --save-every 500 --keep-last 1 \
        --rollout-episodes 32 --rollout-context 16 --rollout-horizon 64 --progress false ${TRAIN_FLAGS:-} \
        > "$OUT/train_$view.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || { tail -n 3 "$OUT"/train_*.log; exit 1; }; done
# 4. The native PPO in each dream, scored in the real env (and in its dream) on the same 200 seeds.
for view in ego rgb; do
    [ -f "$OUT/agent_$view/agent.json" ] || worldsim agent train --env "$ENV_ID" --in dream \
        --checkpoint "$OUT/wm_$view/model" --algo native-ppo --num-envs "$NUM_ENVS" --steps "$AGENT_STEPS" \
        --hyperparams num_steps=64,minibatch_size=8192 --out "$OUT/agent_$view" > "$OUT/agent_$view.log" 2>&1
    for where in real dream; do
        worldsim agent eval --policy "$OUT/agent_$view" --in "$where" --episodes 200 --seed 10000 \
            $([ "$where" = dream ] && echo --checkpoint "$OUT/wm_$view/model") --out "$OUT/eval_${view}_$where.json" \
            | sed -n "1p;4p"
    done
done
