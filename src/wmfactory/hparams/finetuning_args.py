from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class FinetuningArguments:
    """What is trained: the stage, and which weights of the LLM (the world-model keys are `WorldModelArguments`)."""

    _argument_group_name = "method: stage and fine-tuning type"

    stage: Literal["sft", "wm"] = field(
        default="sft",
        metadata={"help": "`sft`: LM loss only, embeddings as inputs. `wm`: world model, adds the embedding loss."},
    )
    finetuning_type: Literal["lora", "freeze", "full"] = field(
        default="lora", metadata={"help": "How the LLM is trained; the projector and head are always trained."}
    )
    # LoRA
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: Optional[int] = field(default=None, metadata={"help": "LoRA alpha (default: 2 * lora_rank)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target: str = field(
        default="all",
        metadata={"help": "Comma-separated module names for LoRA, or `all` for every linear layer but the LM head."},
    )
    # freeze
    freeze_trainable_layers: int = field(
        default=2,
        metadata={"help": "`freeze`: train the last n layers (the first |n| when negative); 0 trains only the "
                          "projector and head."},
    )
    freeze_trainable_modules: str = field(
        default="all",
        metadata={"help": "`freeze`: comma-separated module names inside the trainable layers, or `all`."},
    )
    # training loop
    disable_shuffling: bool = field(
        default=False, metadata={"help": "Read the training set in order (`train_sampling_strategy: sequential`)."}
    )
    plot_loss: bool = field(default=False, metadata={"help": "Draw the loss curves as PNG after training."})

    def __post_init__(self):
        if self.lora_alpha is None:
            self.lora_alpha = self.lora_rank * 2
