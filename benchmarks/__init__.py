"""Benchmarks: `worldsim demo`, the learned-vs-real, memory and scaling benchmarks (`worldsim benchmark`,
parsers in `benchmarks.cli`), their timing helpers, and the speed scripts (`python benchmarks/model_speed.py`,
`dream_speed.py`, `ddp_scaling.py`). The top layer: it may import train, agents, envs and worldsim."""
