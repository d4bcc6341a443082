from .adapter import setup_finetuning
from .config import WorldModelConfig
from .loader import build_world_model, load_tokenizer
from .world_model import WorldModel

__all__ = ["WorldModel", "WorldModelConfig", "build_world_model", "load_tokenizer", "setup_finetuning"]
