"""Loading the tokenizer and the base causal LM, and building a new world model around it."""

import os
from typing import Optional

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..extras.logging import get_logger
from ..hparams import ModelArguments, WorldModelArguments
from .config import WorldModelConfig
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
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, **hub_kwargs(model_args))
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info(f"The tokenizer has no pad token; using eos {tokenizer.eos_token!r} for padding.")
    return tokenizer


def build_world_model(
    model_args: ModelArguments,
    world_model_args: WorldModelArguments,
    embedding_dim: int,
    finetuning_type: str = "full",
    template: Optional[str] = None,
) -> WorldModel:
    """A new world model (projector, head and statistics untrained) around the base LM `model_name_or_path`."""
    with quiet_loading():
        causal_lm = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path, dtype=DTYPES[model_args.torch_dtype], **hub_kwargs(model_args)
        )
    base = model_args.model_name_or_path
    config = WorldModelConfig.from_arguments(
        world_model_args,
        text_config=causal_lm.config,
        embedding_dim=embedding_dim,
        base_model_name_or_path=os.path.abspath(base) if os.path.isdir(base) else base,
        finetuning_type=finetuning_type,
        template=template,
    )
    return WorldModel(config, causal_lm)
