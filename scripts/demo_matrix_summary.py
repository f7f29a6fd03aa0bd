"""Summarise a demo matrix (scripts/demo_matrix.sh): one row per run, as a Markdown table and JSON.

    python3 scripts/demo_matrix_summary.py OUT_DIR [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def summarise(folder: Path) -> list[dict]:
    rows = []
    for log in sorted(folder.glob("s*_t*_*.log")):
        tag = log.stem
        seed, threads, load = re.match(r"s(\d+)_t(\d+)_(\w+)", tag).groups()
        text = log.read_text()
        result = folder / tag / "learned_vs_real" / "learned_vs_real.json"
        row = {"run": tag, "seed": int(seed), "threads": int(threads), "competing_process": load.startswith("loaded")}
        end = re.search(r"rc=(\d+) wall=(\d+)s(?: load_at_start=([\d.]+) load_at_end=([\d.]+))?", text)
        if end:
            row.update(exit_code=int(end.group(1)), wall_seconds=int(end.group(2)))
            if end.group(3):
                row.update(load_at_start=float(end.group(3)), load_at_end=float(end.group(4)))
        if result.is_file():
            r = json.loads(result.read_text())
            for method in ("real_ppo", "dream_ppo"):
                m = r["methods"][method]
                row[method] = {"success_rate": m["success_rate"], "successes": m["successes"],
                               "episodes": m["episodes"], "mean_return": round(m["mean_return"], 4),
                               "train_seconds": round(sum(s[method]["train_seconds"] for s in r["per_seed"]), 1)}
            row["deterministic_eval"] = r["deterministic_eval"]
        clocks = [_seconds(c) for c in re.findall(r"^(\d\d:\d\d:\d\d) ", text, flags=re.M)]
        if len(clocks) > 1:      # the longest wait between two progress lines
            row["longest_silence_seconds"] = max(b - a for a, b in zip(clocks, clocks[1:]))
        rows.append(row)
    return rows


def _seconds(clock: str) -> float:
    h, m, s = (int(x) for x in clock.split(":"))
    return h * 3600 + m * 60 + s


def table(rows: list[dict]) -> str:
    lines = ["| run | seed | threads | competing process | real-trained PPO | dream-trained PPO | wall | longest gap between lines |",
             "| --- | ---: | ---: | --- | --- | --- | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: (r["competing_process"], r["threads"], r["seed"])):
        def cell(method):
            m = r.get(method)
            return "—" if m is None else f"{m['successes']}/{m['episodes']} (return {m['mean_return']:.3f})"
        wall = r.get("wall_seconds")
        lines.append(f"| {r['run']} | {r['seed']} | {r['threads']} | {'yes' if r['competing_process'] else 'no'} | "
                     f"{cell('real_ppo')} | {cell('dream_ppo')} | "
                     f"{'—' if wall is None else f'{wall / 60:.1f} min'} | "
                     f"{r.get('longest_silence_seconds', '—')} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a demo matrix folder.")
    parser.add_argument("folder", help="the OUT_DIR given to scripts/demo_matrix.sh")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args()
    rows = summarise(Path(args.folder))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
