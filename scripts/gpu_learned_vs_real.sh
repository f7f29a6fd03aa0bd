#!/usr/bin/env bash
# The learned-vs-real benchmark of issue 5 on one lent GPU: Empty-8x8 and DoorKey-8x8 side by side,
# every (method, seed) job in its own process. Models under runs/models/<name> (carry it).
#   . .gpu/setup.sh && bash scripts/gpu_learned_vs_real.sh "$OUT"
set -uo pipefail
out=${1:?output folder}
bench() {  # name env steps seeds workers extra...
    local name=$1 env=$2 steps=$3 seeds=$4 workers=$5; shift 5
    python3 -m train.cli benchmark learned-vs-real --env "$env" --checkpoint "runs/models/$name" \
        --world-model-data "runs/data/$name" --steps "$steps" --seeds "$seeds" --workers "$workers" \
        --eval-episodes 100 --out "/tmp/bench_$name" "$@" > "$out/bench_$name.log" 2>&1
    mkdir -p "$out/$name"
    cp /tmp/bench_$name/learned_vs_real.json /tmp/bench_$name/learning_curves.* "$out/$name/" 2>/dev/null
}
# Empty-8x8: rl-zoo's PPO defaults (8 envs), the budget that solves it in the real env.
bench empty8 MiniGrid-Empty-8x8-v0 "${EMPTY_STEPS:-50000}" 3 7 --planner-episodes 20 \
    --planner-horizon 16 --planner-population 256 &
# DoorKey-8x8: a longer task; 64 envs, bigger minibatches and an entropy bonus, as rl-starter-files.
bench doorkey8 MiniGrid-DoorKey-8x8-v0 "${DOORKEY_STEPS:-500000}" 2 5 --planner-episodes 2 --planner-iterations 2 \
    --planner-horizon 12 --planner-population 128 --num-envs 64 \
    --hyperparams "n_steps=128,batch_size=256,n_epochs=4,ent_coef=0.01,learning_rate=5e-4" &
wait
tail -n 25 "$out"/bench_*.log
