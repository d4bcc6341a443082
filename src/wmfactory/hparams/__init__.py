from .api_args import ApiArguments
from .data_args import DataArguments
from .finetuning_args import FinetuningArguments
from .inference_args import InferenceArguments
from .model_args import ModelArguments
from .parser import (
    ApiArgs,
    CheckArgs,
    ExportArgs,
    PredictArgs,
    TrainArgs,
    get_api_args,
    get_check_args,
    get_export_args,
    get_predict_args,
    get_train_args,
    read_args,
)
from .training_args import TrainingArguments
from .world_model_args import WorldModelArguments

__all__ = [
    "ApiArgs", "ApiArguments", "CheckArgs", "DataArguments", "ExportArgs", "FinetuningArguments",
    "InferenceArguments", "ModelArguments", "PredictArgs", "TrainArgs", "TrainingArguments", "WorldModelArguments",
    "get_api_args", "get_check_args", "get_export_args", "get_predict_args", "get_train_args", "read_args",
]
