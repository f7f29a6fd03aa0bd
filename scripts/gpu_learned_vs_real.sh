#!/usr/bin/env bash
# One learned-vs-real benchmark on a CUDA machine, every (method, seed) job in its own process.
# The dream PPO uses the GPU; the real-env PPO runs on the CPU cores (--real-device cpu), because
# many processes time-slicing one GPU with small kernels are far slower than either alone.
# The world model is MODEL (default runs/models/NAME; any checkpoint folder, e.g. OUT_DIR/NAME/model
# of scripts/gpu_world_models.sh) and its data DATA_ROOT/NAME (DATA_ROOT defaults to data). The
# benchmark writes to BENCH_DIR (default /tmp/bench_NAME, a scratch folder); results: OUT_DIR/NAME.tgz
# (JSON, CSV, SVG and the log; no policies). With the project installed:
#   bash scripts/gpu_learned_vs_real.sh OUT_DIR doorkey8 MiniGrid-DoorKey-8x8-v0 1000000 2 4 \
#       --planner-episodes 0 --num-envs 64 \
#       --hyperparams "n_steps=128,batch_size=256,n_epochs=4,ent_coef=0.01,learning_rate=5e-4"
set -uo pipefail
out=${1:?output folder} name=${2:?name} env=${3:?env id} steps=${4:?steps} seeds=${5:?seeds} workers=${6:?workers}
shift 6
bench=${BENCH_DIR:-/tmp/bench_$name}
timeout "${LIMIT_S:-540}" python3 -m train.cli benchmark learned-vs-real --env "$env" --checkpoint "${MODEL:-runs/models/$name}" \
    --world-model-data "${DATA_ROOT:-data}/$name" --steps "$steps" --seeds "$seeds" --workers "$workers" \
    --real-device cpu --eval-episodes 100 --out "$bench" "$@" 2>&1 | grep -v -i "warn" | tee "$out/bench_$name.log"
cp "$out/bench_$name.log" "$bench/"
find "$bench" \( -name '*.json' -o -name '*.csv' -o -name '*.svg' -o -name '*.log' \) -print0 |
    tar czf "$out/$name.tgz" --null -T -
