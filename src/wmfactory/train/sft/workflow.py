"""The SFT stage (LLaMA-Factory's default): embeddings are inputs, only the LM loss is trained."""

import dataclasses
from typing import Optional

from transformers import TrainerCallback

from ...hparams import TrainArgs
from ..wm.workflow import run_wm


def run_sft(args: TrainArgs, callbacks: Optional[list[TrainerCallback]] = None):
    """The world-model pipeline with the embedding loss switched off: the head is neither run nor trained."""
    world_model = dataclasses.replace(args.world_model, embedding_loss_weight=0.0, lm_loss_weight=1.0)
    return run_wm(dataclasses.replace(args, world_model=world_model), callbacks)
