from .collator import WorldModelDataCollator
from .loader import DatasetModule, get_dataset
from .template import TEMPLATES, get_template

__all__ = ["TEMPLATES", "DatasetModule", "WorldModelDataCollator", "get_dataset", "get_template"]
