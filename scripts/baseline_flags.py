"""Print the `worldsim train` flags that turn the default model into a baseline of worldsim.baselines,
for MiniGrid data (138 tokens, 7 actions; frames of 7x7 unless given) at the default size:

    worldsim train ... $(python3 scripts/baseline_flags.py causal:256)        # local, mamba2, ours, causal:C
    worldsim train ... $(python3 scripts/baseline_flags.py mamba2 13x13)      # map-view frames of a 13x13 grid
"""

import sys

from worldsim.baselines import baseline_config
from worldsim.config import WorldModelConfig

name, _, context = sys.argv[1].partition(":")
frame = tuple(int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "7x7").split("x"))
base = WorldModelConfig(vocab_size=138, frame_shape=frame, num_actions=7)
config = baseline_config(name, base, context=int(context) if context else None)
flags = []
for field, value in config.to_dict().items():
    if value != base.to_dict()[field]:
        if field == "block_sizes":
            value = ",".join(f"{h}x{w}" for h, w in value)
        flags.append(f"--model.{field} {str(value).lower() if isinstance(value, bool) else value}")
print(" ".join(flags))
