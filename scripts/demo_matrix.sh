#!/bin/bash
# The demo's robustness matrix on a 2-core CPU: `worldsim demo` for seeds 0-2 with 1 and 2 torch threads,
# with and without competing CPU-bound work, then a summary table and JSON.
#   bash scripts/demo_matrix.sh OUT_DIR          # from the root of a clone whose .venv is set up
# "Loaded" cells run two demos at once, beside a busy-looping process where one of them uses one thread
# (three CPU-bound processes on two cores); "idle" cells run alone. About 2 hours in all.
set -u
out=$(realpath -m "${1:?usage: bash scripts/demo_matrix.sh OUT_DIR}")
mkdir -p "$out"
run() {  # run SEED THREADS TAG
  local t0=$(date +%s)
  local load=$(cut -d' ' -f1 /proc/loadavg)
  .venv/bin/worldsim demo --seed "$1" --threads "$2" --out "$out/$3" > "$out/$3.log" 2>&1
  echo "rc=$? wall=$(( $(date +%s) - t0 ))s load_at_start=$load load_at_end=$(cut -d' ' -f1 /proc/loadavg)" >> "$out/$3.log"
}
burn() { python3 -c "while True: pass" > /dev/null 2>&1 & echo $!; }
b=$(burn); run 0 1 s0_t1_loaded & p1=$!; run 1 1 s1_t1_loaded & p2=$!; wait $p1 $p2; kill "$b"
b=$(burn); run 2 1 s2_t1_loaded & p1=$!; run 0 2 s0_t2_loaded & p2=$!; wait $p1 $p2; kill "$b"
run 1 2 s1_t2_loaded & p1=$!; run 2 2 s2_t2_loaded & p2=$!; wait $p1 $p2
for st in "0 1" "1 1" "2 1" "0 2" "1 2" "2 2"; do set -- $st; run "$1" "$2" "s$1_t$2_idle"; done
.venv/bin/python scripts/demo_matrix_summary.py "$out"
