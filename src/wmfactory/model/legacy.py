"""Folders of earlier versions, converted on load into the current `WorldModel`; `save_pretrained` or
`wmfactory export` then writes the current format.

- wmfactory 0.1: `world_model_config.json` and `world_model.safetensors` (projector, head, statistics) beside the
  LM's own files (full weights, or a LoRA adapter on the LM alone; merged into the base weights on load).
- One-stream folders of 0.2 saved before every model held its projector, head and statistics per stream: their keys
  are `projector.*`, `prediction_head.*`, `statistics.*` (`model.safetensors`; in a LoRA adapter
  `base_model.model.projector.*`, ..., with `modules_to_save: [projector, prediction_head, statistics]`), where
  they are now `projector.<stream>.*`, ... (`one_stream_renaming`)."""

import json
import os
import re
from typing import Iterable, Optional

from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from ..extras.errors import DataError
from ..extras.logging import get_logger
from .config import WORLD_MODEL_KEYS, WorldModelConfig

logger = get_logger(__name__)
LEGACY_CONFIG = "world_model_config.json"
LEGACY_WEIGHTS = "world_model.safetensors"
PEFT_PREFIX = "base_model.model."
PARTS = ("projector", "prediction_head", "statistics")  # `world_model.WORLD_MODEL_PARTS`, which imports this module


def one_stream_renaming(config: WorldModelConfig, keys: Iterable[str]) -> Optional[dict[str, str]]:
    """`{pattern: replacement}` (regular expressions, as `from_pretrained(key_mapping=...)` and PEFT take them) that
    renames the world-model keys of a one-stream folder saved in the layout before streams (`projector.0.weight`,
    `prediction_head.net.0.weight`, `statistics.mean`) to the current one (`projector.<stream>.0.weight`, ...);
    None when `keys` (the folder's, PEFT's `base_model.model.` prefix removed) are in the current layout. The
    projector's first weight tells them apart: `projector.<stream>.0.weight` (`.weight` for a linear projector) is
    there in the current layout only, whatever the stream is called."""
    stream = config.sole_stream
    if stream is None:  # a model of several streams was saved per stream from the start
        return None
    first = "weight" if config.projector_type == "linear" else "0.weight"
    keys = {key.removeprefix(PEFT_PREFIX) for key in keys}
    if f"projector.{stream}.{first}" in keys or f"projector.{first}" not in keys:
        return None
    return {rf"^{part}\.": f"{part}.{stream}." for part in PARTS}  # a stream name is letters, digits and _


def renamed_key(key: str, renaming: Optional[dict[str, str]]) -> str:
    """`key` renamed by the first pattern of `renaming` that matches it; PEFT's `base_model.model.` prefix, where
    there is one, is kept in front (the patterns match the world model's own keys)."""
    prefix = PEFT_PREFIX if key.startswith(PEFT_PREFIX) else ""
    key = key[len(prefix):]
    for pattern, replacement in (renaming or {}).items():
        key, count = re.subn(pattern, replacement, key)
        if count:
            break
    return prefix + key


def renamed(state: dict, renaming: Optional[dict[str, str]]) -> dict:
    """`state` with each key renamed by the first pattern of `renaming` that matches it (`renamed_key`)."""
    return {renamed_key(key, renaming): value for key, value in state.items()}


def load_adapter(model, path: str, is_trainable: bool = False, **hub):
    """`PeftModel.from_pretrained(model, path)` (`model`: a `WorldModel`); a one-stream adapter saved in the layout
    before streams (`modules_to_save: [projector, prediction_head, statistics]`) is loaded as the model's parts per
    stream (`model.part_names()`), its keys renamed (`one_stream_renaming`)."""
    from peft import PeftConfig, PeftModel

    renaming = one_stream_renaming(model.config, weight_keys(path))
    if renaming is None:
        return PeftModel.from_pretrained(model, path, is_trainable=is_trainable, **hub)
    config = PeftConfig.from_pretrained(path, **{k: v for k, v in hub.items() if k != "trust_remote_code"})
    config.modules_to_save = model.part_names()
    return PeftModel.from_pretrained(model, path, is_trainable=is_trainable, config=config, key_mapping=renaming,
                                     **hub)


def upgrade_checkpoint(model, checkpoint: str) -> bool:
    """A Trainer checkpoint (`checkpoint-N`) of a one-stream model saved in the layout before streams, rewritten in
    place in the current layout, so that resuming from it loads every weight (the Trainer would otherwise load the
    LM's alone and leave the projector, head and statistics at their initialisation): the world-model keys of its
    `*.safetensors` files (and of a sharded model's index) renamed, an adapter's `modules_to_save` set to the
    model's parts. Each file is replaced whole (`extras.atomic`); the optimizer's state is by parameter order,
    which the renaming keeps. False when the checkpoint is in the current layout (or not local)."""
    from safetensors.torch import save_file

    from ..extras.atomic import save_with, write_json

    renaming = one_stream_renaming(model.config, weight_keys(checkpoint))
    if renaming is None:
        return False
    for name in sorted(os.listdir(checkpoint)):
        path = os.path.join(checkpoint, name)
        if name.endswith(".safetensors"):
            with safe_open(path, framework="pt") as weights:
                metadata = weights.metadata()
                state = renamed({key: weights.get_tensor(key) for key in weights.keys()}, renaming)
            save_with(path, lambda temporary, state=state, metadata=metadata: save_file(state, temporary, metadata))
        elif name.endswith(".safetensors.index.json"):
            with open(path, encoding="utf-8") as f:
                index = json.load(f)
            index["weight_map"] = renamed(index.get("weight_map", {}), renaming)
            write_json(path, index, indent=2)
    adapter = os.path.join(checkpoint, "adapter_config.json")
    if os.path.isfile(adapter):
        with open(adapter, encoding="utf-8") as f:
            config = json.load(f)
        config["modules_to_save"] = model.part_names()
        write_json(adapter, config, indent=2)
    logger.warning(f"'{checkpoint}' was saved in the one-stream layout before streams (`projector.*`): its "
                   f"world-model weights were renamed in place to the current layout "
                   f"(`projector.{model.config.sole_stream}.*`) to "
                   "resume from it.")
    return True


def weight_keys(path: str) -> list[str]:
    """The tensor names of every `*.safetensors` file of a local folder (headers only)."""
    if not os.path.isdir(path):
        return []
    keys = []
    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(path, name), framework="pt") as weights:
                keys.extend(weights.keys())
    return keys


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
    state = renamed(state, one_stream_renaming(config, state))  # 0.1 models had one stream
    expected = {key for key in model.state_dict() if not key.startswith("language_model.")}
    # baseline spreads: 0 when absent
    added_since = {f"statistics.{config.sole_stream}.{name}" for name in ("step_std", "ridge_residual_std")}
    if not set(state) <= expected or expected - set(state) - added_since:
        raise DataError(f"'{weights}' holds {sorted(state)}, expected {sorted(expected)} (written by another "
                        "wmfactory version?).")
    model.load_state_dict(state, strict=False)
    logger.warning(f"'{path}' was written by wmfactory 0.1 and was converted on load; `model.save_pretrained(DIR)` "
                   "or `wmfactory export` writes it in the current format.")
    return model
