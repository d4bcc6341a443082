"""The SFT stage (LLaMA-Factory's default): embeddings are inputs, only the LM loss is trained."""

import dataclasses
from typing import Optional

from transformers import TrainerCallback

from ...hparams import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments
from ..wm.workflow import run_wm


def run_sft(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    finetuning_args: FinetuningArguments,
    callbacks: Optional[list[TrainerCallback]] = None,
):
    """The world-model pipeline with the embedding loss switched off: the head is neither run nor trained."""
    sft_args = dataclasses.replace(finetuning_args, embedding_loss_weight=0.0, lm_loss_weight=1.0)
    return run_wm(model_args, data_args, training_args, sft_args, callbacks)
