#!/usr/bin/env bash
# Memory Maze 9x9 on a CUDA machine: the frame tokenizer on frames of the scripted walk, the memory task's
# episodes (a walk of CONTEXT steps, back along it, and along it again: `collect --policy retrace:C`), then the
# memory study (scripts/gpu_memory_study.sh: ours and the baselines at equal budgets, and `worldsim benchmark
# memory`, which scores generated frames in PSNR and SSIM by frames since the place was last seen). Needs
# `pip install ".[memory-maze]"`; MuJoCo draws through EGL.
#
#   OUT=runs/memory_maze scripts/gpu_memory_maze.sh
#
# Sizes are environment variables: FRAMES, HELDOUT_FRAMES and TOKENIZER_STEPS (the tokenizer), CONTEXT (the walk, steps; an
# episode is 3 x CONTEXT steps, within the maze's 1,000), EPISODES and TEST_EPISODES, STUDY=0 to stop after
# the data; the study's own variables (STEPS, LIMIT, CURRICULUM, BATCH, EXTRA) pass through. Each stage is
# skipped when its output is there, so a stopped run continues where it was.
set -euo pipefail
worldsim() { python3 -c "import sys; from train.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }   # without installing
export MUJOCO_GL=${MUJOCO_GL:-egl}
ENV_ID=${ENV_ID:-MemoryMaze-9x9-v0}
OUT=${OUT:-runs/memory_maze}
CONTEXT=${CONTEXT:-300}
CORES=$(nproc)
mkdir -p "$OUT/data"
# 1. The tokenizer: 8 x 8 patches of the 64 x 64 frames -> 8 x 8 tokens; its report holds the held-out PSNR.
[ -f "$OUT/tokenizer/report.json" ] || worldsim tokenizer --env "$ENV_ID" --policy walk --frames "${FRAMES:-20000}" \
    --heldout-frames "${HELDOUT_FRAMES:-2000}" --steps "${TOKENIZER_STEPS:-4000}" --out "$OUT/tokenizer" --progress false 2>&1 | tail -2
# 2. The memory task's episodes, for training and (other seeds) for the benchmark; collect continues a dataset.
worldsim collect --env "$ENV_ID" --policy "retrace:$CONTEXT" --max-steps $((3 * CONTEXT)) --tokenizer "$OUT/tokenizer" \
    --episodes "${EPISODES:-400}" --num-envs "$CORES" --vector async --out "$OUT/data/maze_retrace" 2>&1 | tail -1
worldsim collect --env "$ENV_ID" --policy "retrace:$CONTEXT" --max-steps $((3 * CONTEXT)) --tokenizer "$OUT/tokenizer" \
    --episodes "${TEST_EPISODES:-32}" --seed 1000000 --num-envs "$CORES" --vector async \
    --out "$OUT/data/maze_retrace_test" 2>&1 | tail -1
[ "${STUDY:-1}" = 0 ] && exit 0
# 3. The models side by side, then the benchmark on the held-out episodes.
DATA=maze DATA_ROOT="$OUT/data" FRAME=8x8 TASKS=retrace bash scripts/gpu_memory_study.sh "$OUT/study"
