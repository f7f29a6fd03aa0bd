"""`python -m train ARGS` is `worldsim train ARGS`: the module torchrun starts on every rank
(`torchrun --nproc_per_node=N -m train --data DIR --out RUN ...`; see train/distributed.py)."""

import os
import sys

from train.cli import main
from train.distributed import exit_rank

code = main(["train", *sys.argv[1:]])
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    exit_rank(code)            # a rank of a multi-process run: see exit_rank
sys.exit(code)
