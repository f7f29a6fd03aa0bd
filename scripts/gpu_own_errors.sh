#!/usr/bin/env bash
# Training against its own errors, judged closed loop, on one GPU: one dataset; per variant a world
# model, the native PPO trained in its dream, then the agent scored in the real env and the dream
# ($EVAL_EPISODES episodes each) and the fidelity benchmark (random and expert replays, the agent closed loop).
#
#   OUT=runs/own_errors STEPS=1500 scripts/gpu_own_errors.sh [ENV_ID] [VARIANT ...]
#
# Variants: plain, noise (--input-noise 0.1 with a noise-conditioned model), selfforce
# (--self-forcing 0.25 ramped over the first third), both. Results: $OUT/<variant>/...
set -euo pipefail
worldsim() { python3 -c "import sys; from train.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }   # without installing
ENV_ID=${1:-MiniGrid-LavaGapS7-v0}
shift || true
VARIANTS=${*:-plain noise selfforce}
OUT=${OUT:-runs/own_errors}
STEPS=${STEPS:-1500}
EPISODES=${EPISODES:-2000}
PPO_STEPS=${PPO_STEPS:-2000000}
NUM_ENVS=${NUM_ENVS:-1024}
HYPERPARAMS=${HYPERPARAMS:-num_steps=64,minibatch_size=8192}
EVAL_EPISODES=${EVAL_EPISODES:-200}
FIDELITY_EPISODES=${FIDELITY_EPISODES:-32}
MODEL=${MODEL:-}            # e.g. "--model.d_model 64 --model.n_layers 2" for a quick check on a CPU
VIEW=${VIEW:-ego}           # what a frame records: ego (the agent's view) or world (the whole grid)
mkdir -p "$OUT"
[ -d "$OUT/data" ] || worldsim collect --env "$ENV_ID" --policy expert --epsilon 0:0.6 --episodes "$EPISODES" \
    --num-envs 16 --vector async --view "$VIEW" --out "$OUT/data"
for variant in $VARIANTS; do
    case $variant in
        plain) extra=() ;;
        noise) extra=(--input-noise 0.1 --model.noise_conditioning true) ;;
        selfforce) extra=(--self-forcing 0.25 --self-forcing-ramp $((STEPS / 3))) ;;
        both) extra=(--input-noise 0.1 --model.noise_conditioning true --self-forcing 0.25 --self-forcing-ramp $((STEPS / 3))) ;;
        *) echo "unknown variant $variant (plain, noise, selfforce, both)" >&2; exit 2 ;;
    esac
    run="$OUT/$variant"
    [ -d "$run/model" ] || worldsim train --data "$OUT/data" --out "$run" --steps "$STEPS" --lr 1e-3 --batch-size 16 \
        --curriculum 0:64 --aux-loss-weight 0.1 --eval-every 0 --rollout-episodes 32 --rollout-context 8 \
        --rollout-horizon 64 --rollout-sampling sample --progress false $MODEL "${extra[@]}"
    worldsim agent train --env "$ENV_ID" --in dream --checkpoint "$run/model" --algo native-ppo --num-envs "$NUM_ENVS" \
        --steps "$PPO_STEPS" --hyperparams "$HYPERPARAMS" --out "$run/agent" --quiet
    worldsim agent eval --policy "$run/agent" --in real --episodes "$EVAL_EPISODES" --seed 10000 \
        --out "$run/eval_real.json"
    worldsim agent eval --policy "$run/agent" --in dream --checkpoint "$run/model" --episodes "$EVAL_EPISODES" \
        --seed 10000 --out "$run/eval_dream.json"
    worldsim benchmark fidelity --env "$ENV_ID" --checkpoint "$run/model" --policies "random,expert,$run/agent" \
        --episodes "$FIDELITY_EPISODES" --horizon 256 --out "$run/fidelity"
done
