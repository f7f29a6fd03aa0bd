"""Run the README's code blocks as written, in order, and report which ran.

    python3 scripts/readme_check.py [--readme README.md] [--list] [--json OUT.json]

Run it from the root of a fresh clone whose virtual environment is set up (the README's first
line): each ```bash block runs under `bash -euo pipefail` with `.venv/bin` first on PATH, each
```python block with `.venv/bin/python`, both in the clone's root, so the files one block writes
(`data/`, `runs/`) are there for the next. Skipped: the first block (the two set-up lines, which
CI and a fresh clone run anyway) and blocks marked `<!-- readme-check: gpu -->` on the line before
(recipes that need a GPU). torch runs on one thread (OMP_NUM_THREADS=1) unless the caller sets it.

Prints a table (block, first line, result, seconds) and, with --json, writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GPU_MARK = "<!-- readme-check: gpu -->"
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    index: int          # 1-based, over all fenced blocks
    language: str       # "bash", "python", ...
    code: str
    line: int           # where the block starts in the README
    gpu: bool           # marked as needing a GPU


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block of a Markdown text, with its language and GPU mark."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, language = i, opening.group(1)
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        blocks.append(Block(len(blocks) + 1, language, "\n".join(body) + "\n", start + 1, previous == GPU_MARK))
        i += 1
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    """The blocks a CPU machine runs: bash and python, not the set-up block, not GPU-only ones."""
    return [b for b in blocks[1:] if b.language in ("bash", "python") and not b.gpu]


def run_block(block: Block, root: Path, timeout: float) -> tuple[str, float, str]:
    env = dict(os.environ)
    env["PATH"] = f"{root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    if block.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        command = [str(root / ".venv" / "bin" / "python"), "-c", block.code]
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timed out", time.monotonic() - start, ""
    output = (done.stdout + done.stderr)[-2000:]
    return ("ok" if done.returncode == 0 else f"failed (exit {done.returncode})"), time.monotonic() - start, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the README's CPU code blocks as written, in order.")
    parser.add_argument("--readme", default="README.md", help="the Markdown file (default: README.md)")
    parser.add_argument("--list", action="store_true", help="only list the blocks and whether each would run")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per block (default: 3600)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--blocks", default=None, metavar="N,N,...",
                        help="run only these blocks (numbers as --list shows them); the others are listed as skipped")
    args = parser.parse_args(argv)
    readme = Path(args.readme).resolve()
    blocks = readme_blocks(readme.read_text())
    to_run = {b.index for b in runnable(blocks)}
    if args.blocks:
        chosen = {int(n) for n in args.blocks.split(",")}
        if not chosen <= to_run:
            parser.error(f"--blocks {args.blocks}: blocks {sorted(chosen - to_run)} are not runnable here "
                         f"(runnable: {sorted(to_run)})")
        to_run = chosen
    results = []
    for b in blocks:
        first = b.code.strip().splitlines()[0] if b.code.strip() else ""
        if b.index not in to_run:
            why = ("set-up (run by CI)" if b.index == 1 else "GPU" if b.gpu
                   else "not chosen" if b.language in ("bash", "python") else f"not run ({b.language or 'text'})")
            results.append({"block": b.index, "line": b.line, "first": first, "result": f"skipped: {why}",
                            "seconds": 0.0})
        elif args.list:
            results.append({"block": b.index, "line": b.line, "first": first, "result": "would run", "seconds": 0.0})
        else:
            print(f"block {b.index} (line {b.line}): {first[:70]} ...", flush=True)
            result, seconds, output = run_block(b, readme.parent, args.timeout)
            results.append({"block": b.index, "line": b.line, "first": first, "result": result,
                            "seconds": round(seconds, 1), "output_tail": output})
            if result != "ok":
                print(output, flush=True)
    width = max(len(r["first"][:70]) for r in results)
    for r in results:
        print(f"{r['block']:>3}  line {r['line']:>4}  {r['first'][:70]:<{width}}  {r['result']:<26} {r['seconds']:>8.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    failed = [r for r in results if not (r["result"] in ("ok", "would run") or r["result"].startswith("skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
