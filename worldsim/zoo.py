"""The world models shipped inside the package, so `gym.make` works offline with nothing to train.

Each lives in ``worldsim/models/<real env id>/``: the checkpoint (``config.json`` and
``model.safetensors``, as ``WorldModel.save_pretrained`` writes them), ``card.json`` (what it was
trained on and how, and what it scores) and ``README.md`` (the same card for people). Importing
``worldsim`` registers one id per model, ``worldsim/<EnvId without -vN>-Dream-v0``, e.g.

    gym.make("worldsim/MiniGrid-DoorKey-8x8-Dream-v0")          # DreamEnv on the shipped checkpoint
    gym.make_vec("worldsim/MiniGrid-DoorKey-8x8-Dream-v0", 64)  # DreamVectorEnv

`worldsim models` lists them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).parent / "models"
CARD_FILE = "card.json"


def dream_id_for(env_id: str) -> str:
    """'MiniGrid-DoorKey-8x8-v0' -> 'worldsim/MiniGrid-DoorKey-8x8-Dream-v0'."""
    return f"worldsim/{re.sub(r'-v[0-9]+$', '', env_id)}-Dream-v0"


@dataclass(frozen=True)
class ShippedModel:
    """One shipped checkpoint: its real env, its folder and its card."""

    env_id: str
    path: Path
    card: dict[str, Any]

    @property
    def dream_id(self) -> str:
        return dream_id_for(self.env_id)


def shipped_models(root: Path = MODELS_DIR) -> list[ShippedModel]:
    """Every model folder under ``root`` that has a card, sorted by env id."""
    found = []
    for card_path in sorted(Path(root).glob(f"*/{CARD_FILE}")):
        card = json.loads(card_path.read_text())
        found.append(ShippedModel(env_id=card["env_id"], path=card_path.parent, card=card))
    return found


def shipped_model(name: str, root: Path = MODELS_DIR) -> ShippedModel:
    """The shipped model of a real env id or of a dream id; KeyError lists what is shipped."""
    models = shipped_models(root)
    for m in models:
        if name in (m.env_id, m.dream_id):
            return m
    listed = ", ".join(m.env_id for m in models) or "none"
    raise KeyError(f"no shipped world model for {name!r}; shipped: {listed}")


def resolve_checkpoint(checkpoint, env_id: str | None = None):
    """What a checkpoint argument names: an existing folder stays as it is; the env id or gym id of
    a shipped model becomes that model's folder; None becomes the shipped model of `env_id`, if
    there is one. Anything else comes back unchanged, for the caller to report."""
    if checkpoint is None:
        if env_id is None:
            return None
        try:
            return str(shipped_model(env_id).path)
        except KeyError:
            return None
    if isinstance(checkpoint, (str, Path)) and not Path(checkpoint).exists():
        try:
            return str(shipped_model(str(checkpoint)).path)
        except KeyError:
            return checkpoint
    return checkpoint
