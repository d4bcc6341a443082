"""Loading the tokenizer and the base causal LM, and building a new world model around it."""

import os
from typing import Optional

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..extras.errors import ConfigError, DataError
from ..extras.logging import get_logger
from ..hparams import ModelArguments, WorldModelArguments
from .config import WorldModelConfig, check_config_dict, check_weights_hold
from .files import damaged_weights
from .world_model import WorldModel, quiet_loading

logger = get_logger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def hub_kwargs(model_args: ModelArguments) -> dict:
    return {
        "trust_remote_code": model_args.trust_remote_code,
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": model_args.hf_hub_token,
    }


def load_tokenizer(model_args: ModelArguments):
    tokenizer = _from_pretrained(AutoTokenizer, "tokenizer", model_args)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info(f"The tokenizer has no pad token; using eos {tokenizer.eos_token!r} for padding.")
    return tokenizer


def build_world_model(
    model_args: ModelArguments,
    world_model_args: WorldModelArguments,
    streams: dict[str, int] | int,
    finetuning_type: str = "full",
    template: Optional[str] = None,
) -> WorldModel:
    """A new world model (projector, head and statistics untrained) around the base LM `model_name_or_path`, for the
    streams `{name: dimension}` (a number: one stream of that dimension)."""
    with quiet_loading():
        causal_lm = _from_pretrained(AutoModelForCausalLM, "model", model_args, dtype=DTYPES[model_args.torch_dtype])
    base = model_args.model_name_or_path
    config = WorldModelConfig.from_arguments(
        world_model_args,
        text_config=causal_lm.config,
        streams=streams,
        base_model_name_or_path=os.path.abspath(base) if os.path.isdir(base) else base,
        finetuning_type=finetuning_type,
        template=template,
    )
    return WorldModel(config, causal_lm)


def _from_pretrained(auto_class, what: str, model_args: ModelArguments, **kwargs):
    """`auto_class.from_pretrained(model_name_or_path)`; a path or hub id that holds no such thing is one line."""
    path = model_args.model_name_or_path
    if what == "model" and os.path.isdir(path):
        if damage := damaged_weights(path):  # before safetensors' own error
            raise ConfigError(f"`model_name_or_path` '{path}': {damage}; copy or download the model again.")
        _check_local_config(path)
    try:
        return auto_class.from_pretrained(path, **hub_kwargs(model_args), **kwargs)
    except (OSError, ValueError) as err:
        where = "a local folder" if os.path.isdir(path) else "not a local folder, so a hub id"
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"`model_name_or_path` '{path}' ({where}): cannot load its {what}: {detail}") from None


def _check_local_config(folder: str) -> None:
    """The base model's config.json, checked for sizes no model has before transformers allocates them."""
    import json

    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError, RecursionError):
        return  # transformers reports it, with its reason
    if isinstance(config, dict):
        try:
            check_config_dict(config, folder)
            check_weights_hold(config, folder)
        except DataError as err:
            raise ConfigError(f"`model_name_or_path` {err}") from None
