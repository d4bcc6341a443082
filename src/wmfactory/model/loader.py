"""Loading the tokenizer, the base causal LM and the world model around it."""

import os
from typing import Optional

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..extras.logging import get_logger
from ..hparams import FinetuningArguments, ModelArguments
from .adapter import setup_finetuning
from .world_model import WorldModel, WorldModelConfig

logger = get_logger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def _hub_kwargs(model_args: ModelArguments) -> dict:
    return {
        "trust_remote_code": model_args.trust_remote_code,
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": model_args.hf_hub_token,
    }


def load_tokenizer(model_args: ModelArguments):
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, **_hub_kwargs(model_args))
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info(f"The tokenizer has no pad token; using eos {tokenizer.eos_token!r} for padding.")
    return tokenizer


def load_world_model(
    model_args: ModelArguments,
    finetuning_args: FinetuningArguments,
    embedding_dim: int,
    template: Optional[str] = None,
    is_trainable: bool = True,
) -> WorldModel:
    causal_lm = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, dtype=DTYPES[model_args.torch_dtype], **_hub_kwargs(model_args)
    )
    language_model = setup_finetuning(causal_lm, model_args, finetuning_args, is_trainable)
    base = model_args.model_name_or_path
    config = WorldModelConfig(
        embedding_dim=embedding_dim,
        hidden_size=causal_lm.config.get_text_config().hidden_size,
        projector_type=model_args.projector_type,
        prediction_head_type=model_args.prediction_head_type,
        embedding_loss_weight=finetuning_args.embedding_loss_weight,
        lm_loss_weight=finetuning_args.lm_loss_weight,
        world_model_loss_type=finetuning_args.world_model_loss_type,
        embedding_targets=finetuning_args.embedding_targets,
        embedding_norm=finetuning_args.embedding_norm,
        predict_residual=finetuning_args.predict_residual,
        embedding_noise_std=finetuning_args.embedding_noise_std,
        scheduled_sampling_prob=finetuning_args.scheduled_sampling_prob,
        ridge_history=finetuning_args.ridge_history,
        base_model_name_or_path=os.path.abspath(base) if os.path.isdir(base) else base,
        finetuning_type=finetuning_args.finetuning_type,
        template=template,
    )
    model = WorldModel(language_model, config)
    if model_args.adapter_name_or_path and os.path.isfile(
        os.path.join(model_args.adapter_name_or_path, "world_model.safetensors")
    ):
        model.load_world_model_weights(model_args.adapter_name_or_path)
    model.prediction_head.requires_grad_(is_trainable and finetuning_args.embedding_loss_weight > 0)
    output_embeddings = causal_lm.get_output_embeddings()
    if finetuning_args.lm_loss_weight == 0 and output_embeddings is not None and (
        output_embeddings.weight is not causal_lm.get_input_embeddings().weight
    ):
        # the LM head is never run: frozen, so that distributed training sees no trainable parameter unused
        output_embeddings.requires_grad_(False)
    model.projector.requires_grad_(is_trainable)
    if is_trainable:
        # under DeepSpeed ZeRO-3 a partitioned parameter is empty here; `ds_numel` is its full size
        trainable = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
        total = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
        logger.info(f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.4f}%)")
    return model
