"""worldsim: a learned, Gymnasium-compatible simulator built on a long-context video world model."""

from .checkpoint import CheckpointError
from .config import WorldModelConfig
from .dream_env import DreamEnv
from .dream_vector_env import DreamVectorEnv
from .model import WorldModel, WorldModelOutput
from .registration import DREAM_ENV_ID, register_envs
from .state import LayerState, ModelState

__all__ = ["WorldModel", "WorldModelConfig", "WorldModelOutput", "ModelState", "LayerState", "CheckpointError",
           "DreamEnv", "DreamVectorEnv", "DREAM_ENV_ID"]

register_envs()
__version__ = "0.1.0"
