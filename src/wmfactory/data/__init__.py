from .collator import WorldModelDataCollator
from .loader import DatasetModule, get_dataset
from .tables import from_dataframe
from .template import TEMPLATES, get_template

__all__ = ["TEMPLATES", "DatasetModule", "WorldModelDataCollator", "from_dataframe", "get_dataset", "get_template"]
