from .loader import load_tokenizer, load_world_model
from .world_model import WorldModel, WorldModelConfig

__all__ = ["WorldModel", "WorldModelConfig", "load_tokenizer", "load_world_model"]
