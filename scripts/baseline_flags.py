"""Print the `worldsim train` flags that turn the default model into a baseline of worldsim.baselines,
for MiniGrid data (7x7 frames, 138 tokens, 7 actions) at the default size:

    worldsim train ... $(python3 scripts/baseline_flags.py causal:256)      # local, mamba2, ours, causal:C
"""

import sys

from worldsim.baselines import baseline_config
from worldsim.config import WorldModelConfig

name, _, context = sys.argv[1].partition(":")
base = WorldModelConfig(vocab_size=138, frame_shape=(7, 7), num_actions=7)
config = baseline_config(name, base, context=int(context) if context else None)
flags = []
for field, value in config.to_dict().items():
    if value != base.to_dict()[field]:
        if field == "block_sizes":
            value = ",".join(f"{h}x{w}" for h, w in value)
        flags.append(f"--model.{field} {str(value).lower() if isinstance(value, bool) else value}")
print(" ".join(flags))
