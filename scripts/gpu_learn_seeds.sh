#!/usr/bin/env bash
# Several seeds of one `worldsim learn` command at once on one CUDA machine: each seed is its own
# process with its own run folder RUN_ROOT/PREFIX<S> (defaults /tmp/learn_seeds and seed-), so running
# this again with the same arguments continues every seed where it stopped. Each process is stopped
# after LIMIT_S seconds (default 540) by SIGTERM: a world model in training checkpoints first. Results
# in OUT_DIR: PREFIX<S>.log and PREFIX<S>.tgz (the run's JSON, JSON lines and SVG files: metrics,
# learn.json, each round's evaluation and agent training; and the last round's world model and agents).
#   bash scripts/gpu_learn_seeds.sh OUT_DIR "1 2" --env MiniGrid-DoorKey-8x8-v0 --real-steps 150000 ...
# With PREFIX=learn-seed and RUN_ROOT set to a `worldsim benchmark sample-efficiency` output folder,
# the seeds are that benchmark's learn runs: run it afterwards with the same settings (its --learn
# JSON, --real-steps, --eval-episodes) and it continues them and adds the PPO baseline.
set -uo pipefail
out=${1:?output folder} seeds=${2:?seeds, e.g. "1 2"}
shift 2
root=${RUN_ROOT:-/tmp/learn_seeds} prefix=${PREFIX:-seed-}
mkdir -p "$root" "$out"
# Triton keeps the scan kernels' autotuning on disk, so a process continuing a run on a machine where
# one ran before skips it (a world model's first training step, four runs sharing an H200: 93 s on a fresh
# machine, 19 s in a later process with the caches on disk).
export TRITON_CACHE_AUTOTUNING=${TRITON_CACHE_AUTOTUNING:-1}
for s in $seeds; do
    timeout "${LIMIT_S:-540}" python3 -m train.cli learn "$@" --seed "$s" --out "$root/$prefix$s" \
        >> "$root/$prefix$s.log" 2>&1 &
done
wait
for s in $seeds; do
    cp "$root/$prefix$s.log" "$out/"
    # The last round's world model and agent come too (about 8 MB): to ship, or to plan with.
    last=$(cd "$root" && ls -d "$prefix$s"/round-* 2>/dev/null | sort | tail -1)
    (cd "$root" && { find "$prefix$s" \( -name '*.json' -o -name '*.jsonl' -o -name '*.svg' \) -print0
                     [ -n "$last" ] && find "$last/model_run/model" "$last/agent" "$last/explorer" -type f \
                         -print0 2>/dev/null; } | tar czf "$out/$prefix$s.tgz" --null -T -)
done
