"""worldsim: a learned, Gymnasium-compatible simulator built on a long-context video world model."""

from .checkpoint import CheckpointError
from .config import WorldModelConfig
from .model import WorldModel, WorldModelOutput
from .state import LayerState, ModelState

__all__ = ["WorldModel", "WorldModelConfig", "WorldModelOutput", "ModelState", "LayerState", "CheckpointError"]
__version__ = "0.1.0"
