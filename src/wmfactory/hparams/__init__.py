from .data_args import DataArguments
from .finetuning_args import FinetuningArguments
from .model_args import ModelArguments
from .parser import get_train_args, read_args
from .training_args import TrainingArguments

__all__ = ["DataArguments", "FinetuningArguments", "ModelArguments", "TrainingArguments", "get_train_args",
           "read_args"]
