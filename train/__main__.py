"""`python -m train ARGS` is `worldsim train ARGS`: the module torchrun starts on every rank
(`torchrun --nproc_per_node=N -m train --data DIR --out RUN ...`; see train/distributed.py)."""

import sys

from train.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
