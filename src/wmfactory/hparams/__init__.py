from .data_args import DataArguments
from .finetuning_args import FinetuningArguments
from .inference_args import InferenceArguments
from .model_args import ModelArguments
from .parser import get_infer_args, get_train_args, read_args
from .training_args import TrainingArguments

__all__ = [
    "DataArguments", "FinetuningArguments", "InferenceArguments", "ModelArguments", "TrainingArguments",
    "get_infer_args", "get_train_args", "read_args",
]
