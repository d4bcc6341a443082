"""Folders written by wmfactory 0.1: `world_model_config.json` and `world_model.safetensors` (projector, head,
statistics) beside the LM's own files (full weights, or a LoRA adapter on the LM alone). They are converted on
load into the current `WorldModel` (a LoRA adapter is merged into the base weights); `save_pretrained` or
`wmfactory export` then writes the current format."""

import json
import os
from typing import Optional

from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from ..extras.errors import DataError
from ..extras.logging import get_logger
from .config import WORLD_MODEL_KEYS, WorldModelConfig

logger = get_logger(__name__)
LEGACY_CONFIG = "world_model_config.json"
LEGACY_WEIGHTS = "world_model.safetensors"


def is_legacy_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, LEGACY_CONFIG))


def _convert_key(key: str) -> str:
    # 0.1 heads were the bare Linear/Sequential; heads are now `DeterministicHead(net)`
    return "prediction_head.net." + key[len("prediction_head."):] if key.startswith("prediction_head.") else key


def load_legacy_world_model(cls, path: str, base_model_name_or_path: Optional[str] = None, **kwargs):
    with open(os.path.join(path, LEGACY_CONFIG), encoding="utf-8") as f:
        old = json.load(f)
    weights = os.path.join(path, LEGACY_WEIGHTS)
    if not os.path.isfile(weights):
        raise DataError(f"'{weights}' is missing: the projector and prediction head were not saved with this model, "
                        "so it cannot be loaded as a world model.")
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_model_name_or_path or old["base_model_name_or_path"],
                                                    **kwargs)
        language_model = PeftModel.from_pretrained(base, path).merge_and_unload()
    else:
        language_model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    config = WorldModelConfig(
        text_config=language_model.config,
        base_model_name_or_path=old.get("base_model_name_or_path"),
        finetuning_type=old.get("finetuning_type", "full"),
        template=old.get("template"),
        **{key: old[key] for key in WORLD_MODEL_KEYS if key in old},
    )
    model = cls(config, language_model)
    state = {_convert_key(key): value for key, value in load_file(weights).items()}
    expected = {key for key in model.state_dict() if not key.startswith("language_model.")}
    added_since = {"statistics.step_std", "statistics.ridge_residual_std"}  # baseline spreads: 0 when absent
    if not set(state) <= expected or expected - set(state) - added_since:
        raise DataError(f"'{weights}' holds {sorted(state)}, expected {sorted(expected)} (written by another "
                        "wmfactory version?).")
    model.load_state_dict(state, strict=False)
    logger.warning(f"'{path}' was written by wmfactory 0.1 and was converted on load; `model.save_pretrained(DIR)` "
                   "or `wmfactory export` writes it in the current format.")
    return model
