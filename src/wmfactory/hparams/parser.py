"""One parser for every way a run is configured: a YAML file with `key=value` overrides, `--flag value` arguments,
or a dict. All of them become one flat dict of LLaMA-Factory keys, checked against the dataclasses, then parsed."""

import dataclasses
import difflib
import enum
import importlib.util
import json
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from transformers import HfArgumentParser

from ..extras.errors import ConfigError, DataError, shown
from ..extras.logging import get_logger
from .api_args import ApiArguments
from .data_args import DataArguments
from .encode_args import EncodeArguments, RetrieveArguments
from .finetuning_args import FinetuningArguments
from .inference_args import InferenceArguments
from .model_args import ModelArguments
from .training_args import TrainingArguments
from .webui_args import WebuiArguments
from .world_model_args import WorldModelArguments

logger = get_logger(__name__)
# the world-model keys that only the embedding loss uses: set under `stage: sft`, they are ignored
WORLD_MODEL_ONLY_KEYS = {"embedding_loss_weight", "world_model_loss_type", "embedding_targets", "prediction_head_type",
                         "predict_residual", "scheduled_sampling_prob"}
# every command reads the same keys, so that one YAML file serves train, check, predict, eval and export
ALL_DATACLASSES = (
    ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, WorldModelArguments, InferenceArguments
)
# `warmup_ratio` (LLaMA-Factory, transformers 4) is `warmup_steps` below 1 in transformers 5
KEY_ALIASES = {"model_name": "model_name_or_path", "warmup_ratio": "warmup_steps"}
# transformers 5.2x renamed `gradient_checkpointing*` (LLaMA-Factory's keys) to `activation_checkpointing*`
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in
                 {f.name for f in dataclasses.fields(TrainingArguments)} else "gradient_checkpointing")
if CHECKPOINTING == "activation_checkpointing":
    KEY_ALIASES.update(gradient_checkpointing="activation_checkpointing",
                       gradient_checkpointing_kwargs="activation_checkpointing_kwargs")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with only true/false as booleans (YAML 1.2, as LLaMA-Factory's OmegaConf reads it): `no`, `off`,
    `yes` and `on` stay strings, so that `eval_strategy: no` means the strategy "no"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text_or_stream):
    return yaml.load(text_or_stream, Loader=_Yaml12Loader)


def read_args(args: Union[dict[str, Any], list[str], None] = None) -> dict[str, Any]:
    """Turn `args` (default: `sys.argv[1:]`) into one flat dict.

    - a dict is used as it is;
    - `["cfg.yaml", "key=value", ...]`: the YAML file (or .json) with overrides on top;
    - `["--key", "value", "--flag", ...]`: command-line flags (`--flag` alone means true).
    """
    if isinstance(args, dict):
        return dict(args)
    argv = list(sys.argv[1:] if args is None else args)
    config: dict[str, Any] = {}
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        config = _load_config_file(argv.pop(0))
        for item in argv:
            if "=" not in item or item.startswith("-"):
                raise ConfigError(f"Override '{item}' must look like key=value (e.g. learning_rate=1e-4).")
            key, value = item.split("=", 1)
            try:
                config[key.strip()] = load_yaml(value) if value.strip() else ""
            except (ValueError, yaml.YAMLError) as err:
                raise ConfigError(f"Override '{shown(item)[:200]}': the value cannot be parsed "
                                  f"({' '.join(str(err).split())[:200]}).") from None
        return config
    i = 0
    while i < len(argv):
        item = argv[i]
        if not item.startswith("--"):
            raise ConfigError(f"Unexpected argument '{item}': use --key value (or a YAML file as first argument).")
        key = item[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 1
        else:
            value = "true"
        config[key.replace("-", "_")] = value
        i += 1
    return config


def _load_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"Config file '{path}' not found.")
    try:
        with open(file, encoding="utf-8") as f:
            content = json.load(f) if file.suffix == ".json" else load_yaml(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f"Config file '{path}', line {err.lineno}, column {err.colno}: {err.msg}") from None
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark, f" ({err.context})" if err.context else ""
        raise ConfigError(f"Config file '{path}', line {mark.line + 1}, column {mark.column + 1}: "
                          f"{err.problem}{context}") from None
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"Config file '{path}' cannot be parsed: {' '.join(str(err).split())}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of keys to values.")
    return content


def _field_types(classes) -> dict[str, Any]:
    types_by_key = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                types_by_key[f.name] = hints.get(f.name, f.type)
    return types_by_key


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Give a string (or YAML scalar) the type its field declares, so that `1e-4`, `true` and `8` work anywhere."""
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(f"`{key}` '{shown(value)}' holds a NUL byte, which no path, name or value can.")
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"`{key}` must be one of {', '.join(map(str, choices))}, got '{value}'.")
        return value
    enum_type = _enum_member(annotation)
    if enum_type is not None and isinstance(value, str):
        choices = [member.value for member in enum_type]
        if value not in choices:
            raise ConfigError(f"`{key}` must be one of {', '.join(map(str, choices))}, got '{value}'.")
        return value
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        if optional and value is None:
            return None
        if optional and str not in members and isinstance(value, str) and value.lower() in ("none", "null"):
            return None
        literal = [a for a in members if typing.get_origin(a) is Literal]
        if len(members) == 1 or literal:
            return _coerce(key, value, (literal or members)[0])
        for candidate in (bool, int, float):
            if candidate in members and not isinstance(value, str):
                return value
        if isinstance(value, str):
            if str in members:
                return value
            for candidate in (bool, int, float):
                if candidate in members:
                    return _coerce(key, value, candidate)
        kinds = tuple(typing.get_origin(m) or m for m in members if isinstance(typing.get_origin(m) or m, type))
        if kinds and not isinstance(value, kinds):  # e.g. a number where a mapping or a file name goes
            names = " or ".join(sorted({KIND_NAMES.get(k, k.__name__) for k in kinds}))
            raise ConfigError(f"`{key}` must be {names}, got {type(value).__name__} '{_short(value)}'.")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in _TRUE:
            return True
        if str(value).lower() in _FALSE:
            return False
        raise ConfigError(f"`{key}` must be true or false, got '{value}'.")
    if annotation in (int, float) and not isinstance(value, bool):
        try:
            number = float(value)
            if annotation is int:
                if number != int(number):
                    raise ValueError
                return int(number)
            return number
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float, or inf as an int
            raise ConfigError(f"`{key}` must be a number ({annotation.__name__}), got '{_short(value)}'.") from None
    if annotation is str and not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if key == "resume_from_checkpoint" and value is True:  # `resume_from_checkpoint: true`: the newest one
            return "true"
        raise ConfigError(f"`{key}` must be a string, got {type(value).__name__} '{_short(value)}'.")
    return value


KIND_NAMES = {dict: "a mapping", list: "a list", str: "a string"}


def _short(value: Any) -> str:
    """A value for a one-line message: at most 60 characters, control characters escaped."""
    try:
        text = str(value)
    except ValueError:  # an integer of more digits than Python prints
        text = "a number of thousands of digits"
    return shown(text if len(text) <= 60 else text[:57] + "...")


def _enum_member(annotation: Any):
    """The Enum class a field takes (`lr_scheduler_type: SchedulerType | str`), or None."""
    candidates = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else \
        (annotation,)
    return next((a for a in candidates if isinstance(a, type) and issubclass(a, enum.Enum)), None)


def normalize_args(config: dict[str, Any], classes=ALL_DATACLASSES) -> dict[str, Any]:
    """Apply aliases, reject unknown keys with the closest known one, and coerce values to their field types."""
    known = _field_types(classes)
    normalized = {}
    for key, value in config.items():
        key = KEY_ALIASES.get(key, key)
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ConfigError(f"Unknown key `{shown(str(key))}`.{hint}")
        normalized[key] = _coerce(key, value, known[key])
    return normalized




def parse_dict(config: dict[str, Any], classes=ALL_DATACLASSES) -> tuple:
    """The argument dataclasses, in the order of `classes`. A `ValueError` raised while the dataclasses validate
    their values (ours or Hugging Face's `TrainingArguments`) is a configuration mistake, reported as such."""
    parser = HfArgumentParser(classes)
    try:
        return parser.parse_dict(normalize_args(config, classes), allow_extra_keys=False)
    except DataError:
        raise
    except (ValueError, OverflowError) as err:
        raise ConfigError(" ".join(str(err).split())) from None
    except OSError as err:  # a key naming a file Hugging Face reads (accelerator_config, deepspeed, fsdp_config)
        raise ConfigError(f"cannot read '{err.filename}': {err.strerror or err}.") from None


@dataclass
class TrainArgs:
    """`wmfactory train` / `python -m wmfactory.train.tuner`."""

    model: ModelArguments
    data: DataArguments
    training: TrainingArguments
    finetuning: FinetuningArguments
    world_model: WorldModelArguments


@dataclass
class CheckArgs:
    """`wmfactory check`: the datasets, read as training would read them."""

    model: ModelArguments
    data: DataArguments
    training: TrainingArguments
    world_model: WorldModelArguments


@dataclass
class PredictArgs:
    """`wmfactory predict` and `wmfactory eval`. `given` holds the keys the user set (the others come from the
    trained model's configuration)."""

    model: ModelArguments
    data: DataArguments
    training: TrainingArguments
    world_model: WorldModelArguments
    inference: InferenceArguments
    given: frozenset[str]


@dataclass
class ExportArgs:
    """`wmfactory export`. `overwrite`: `overwrite_output_dir`, which lets an export replace a non-empty folder."""

    model: ModelArguments
    inference: InferenceArguments
    overwrite: bool


def _parse(args, train: bool) -> tuple[dict[str, Any], tuple]:
    config = read_args(args)
    if train:
        config.setdefault("do_train", True)  # LLaMA-Factory configs say it; the seed's command line does not
    else:
        config["do_train"] = False
    if config.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:  # before transformers trips on it
        raise ConfigError("`deepspeed` is set but DeepSpeed is not installed: `pip install deepspeed`, or unset it.")
    if "use_cpu" not in config and not _has_accelerator():
        # On a machine without GPU, run on the CPU (so `bf16` means CPU autocast and torchrun uses gloo DDP).
        config["use_cpu"] = True
    parsed = parse_dict(config)
    _check_common_values(parsed[2])
    return config, parsed


def _check_common_values(training: TrainingArguments) -> None:
    """Values every command reads that Hugging Face checks only when it uses them, deep inside a run."""
    for key in ("seed", "data_seed"):
        value = getattr(training, key)
        if value is not None and not 0 <= value <= 2**32 - 1:
            raise ConfigError(f"`{key}` must be in [0, 2**32 - 1], got {value}.")
    if training.dataloader_num_workers < 0:
        raise ConfigError(f"`dataloader_num_workers` must be at least 0 (0: load in the main process), got "
                          f"{training.dataloader_num_workers}.")


def get_train_args(args: Union[dict[str, Any], list[str], None] = None) -> TrainArgs:
    config, parsed = _parse(args, train=True)
    model, data, training, finetuning, world_model, _ = parsed
    if not data.dataset_names and training.do_train:
        raise ConfigError("`dataset` is required for training (a name registered in dataset_info.json).")
    if "output_dir" not in config:  # transformers would train into ./trainer_output
        raise ConfigError("`output_dir` is required: where the model, logs and checkpoints are written.")
    if finetuning.stage == "sft":
        ignored = sorted(key for key in config if key in WORLD_MODEL_ONLY_KEYS)
        if ignored:
            logger.warning(f"`stage` is sft (the default, as in LLaMA-Factory): only the LM loss is trained, so "
                           f"{', '.join(ignored)} have no effect. Set `stage: wm` to train the world model.")
    if model.adapter_name_or_path and finetuning.finetuning_type != "lora":
        raise ConfigError("`adapter_name_or_path` needs `finetuning_type: lora`.")
    if finetuning.stage == "wm" and world_model.embedding_loss_weight == 0 and world_model.lm_loss_weight == 0:
        raise ConfigError("`embedding_loss_weight` and `lm_loss_weight` are both 0: nothing would be trained.")
    _check_training_values(training, finetuning, data)
    # The collator needs the world-model columns, which no model signature names.
    training.remove_unused_columns = False
    if training.ddp_find_unused_parameters is None:
        # every trainable parameter takes part in every step (the projector and head run even on empty batches)
        training.ddp_find_unused_parameters = False
    if finetuning.disable_shuffling:
        training.train_sampling_strategy = "sequential"
    if "logging_first_step" not in config:
        training.logging_first_step = True  # with the last step (LogCallback), every run logs both loss parts
    if getattr(training, f"{CHECKPOINTING}_kwargs") is None:
        # non-reentrant: gradients reach the projector through layers whose other inputs need none
        setattr(training, f"{CHECKPOINTING}_kwargs", {"use_reentrant": False})
    return TrainArgs(model, data, training, finetuning, world_model)


def _check_training_values(training: TrainingArguments, finetuning: FinetuningArguments, data: DataArguments) -> None:
    """The values Hugging Face accepts but no run can train with, each named."""
    if not math.isfinite(training.learning_rate) or training.learning_rate <= 0:
        raise ConfigError(f"`learning_rate` must be a positive number, got {training.learning_rate}.")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training, key) < 1:
            raise ConfigError(f"`{key}` must be at least 1, got {getattr(training, key)}.")
    if finetuning.finetuning_type == "lora":
        if finetuning.lora_rank < 1:
            raise ConfigError(f"`lora_rank` must be at least 1, got {finetuning.lora_rank}.")
        if not 0 <= finetuning.lora_dropout < 1:
            raise ConfigError(f"`lora_dropout` must be in [0, 1), got {finetuning.lora_dropout}.")
    if data.max_samples is not None and data.max_samples < 1:
        raise ConfigError(f"`max_samples` must be at least 1, got {data.max_samples}.")
    if data.interleave_probs is not None:
        try:
            probs = [float(p) for p in data.interleave_probs.split(",")]
        except ValueError:
            raise ConfigError(f"`interleave_probs` must be comma-separated numbers, got '{data.interleave_probs}'.") \
                from None
        if len(probs) != len(data.dataset_names) or abs(sum(probs) - 1) > 1e-6 or min(probs) < 0:
            raise ConfigError(f"`interleave_probs` needs one probability per dataset of `dataset` "
                              f"({len(data.dataset_names)}), each >= 0, summing to 1; got {probs}.")
    if training.output_dir and os.path.isfile(training.output_dir):
        raise ConfigError(f"`output_dir` '{training.output_dir}' is a file, not a folder.")
    resume = training.resume_from_checkpoint
    if resume and str(resume).lower() != "true" and not os.path.isdir(resume):
        raise ConfigError(f"`resume_from_checkpoint` '{resume}' is not a folder (use a checkpoint-N folder, or true "
                          "for the newest one in output_dir).")
    if not all(isinstance(name, str) and name for name in training.report_to):
        raise ConfigError(f"`report_to` must name trackers (tensorboard, wandb, trackio, ... or none), got "
                          f"{training.report_to!r}.")
    missing = [name for name in training.report_to if name not in ("none", "all") and not _tracker_installed(name)]
    if missing:
        raise ConfigError(f"`report_to` names {', '.join(missing)}, which is not installed: `pip install "
                          f"{' '.join(TRACKER_PACKAGES.get(name, name) for name in missing)}`, or set report_to: none.")


# the package each `report_to` tracker needs
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
                    "clearml": "clearml", "neptune": "neptune", "dvclive": "dvclive", "swanlab": "swanlab",
                    "trackio": "trackio", "codecarbon": "codecarbon", "aim": "aim", "dagshub": "dagshub"}


def _tracker_installed(name: str) -> bool:
    if name == "tensorboard":  # transformers takes torch.utils.tensorboard or tensorboardX
        return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") \
            is not None
    return importlib.util.find_spec(TRACKER_PACKAGES.get(name, name)) is not None


def get_check_args(args: Union[dict[str, Any], list[str], None] = None) -> CheckArgs:
    _, (model, data, training, _, world_model, _) = _parse(args, train=False)
    if not data.dataset_names + data.eval_dataset_names:
        raise ConfigError("`dataset` is required: the dataset(s) to check.")
    return CheckArgs(model, data, training, world_model)


def get_predict_args(args: Union[dict[str, Any], list[str], None] = None) -> PredictArgs:
    config, (model, data, training, _, world_model, inference) = _parse(args, train=False)
    given = frozenset(KEY_ALIASES.get(key, key) for key in config)
    if not data.dataset_names:
        raise ConfigError("`dataset` is required: the rows to predict (a name registered in dataset_info.json).")
    if "output_dir" not in given:
        raise ConfigError("`output_dir` is required: where the results are written.")
    return PredictArgs(model, data, training, world_model, inference, given)


def get_export_args(args: Union[dict[str, Any], list[str], None] = None) -> ExportArgs:
    _, (model, _, training, _, _, inference) = _parse(args, train=False)
    if not inference.export_dir:
        raise ConfigError("`export_dir` is required: where the merged world model is written.")
    return ExportArgs(model, inference, training.overwrite_output_dir)


@dataclass
class ApiArgs:
    """`wmfactory api`: the model to serve, its bank (`bank`, `top_k`) and how the server listens."""

    model: ModelArguments
    inference: InferenceArguments
    api: ApiArguments


API_DATACLASSES = (ModelArguments, InferenceArguments, ApiArguments)


def get_api_args(args: Union[dict[str, Any], list[str], None] = None) -> ApiArgs:
    return ApiArgs(*parse_dict(read_args(args), API_DATACLASSES))


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or (
        torch.backends.mps.is_available()
    )


# per command: the argument groups it reads, its own first; every command accepts every key, so that one YAML
# file serves them all
HELP_GROUPS = {
    "train": (ModelArguments, WorldModelArguments, FinetuningArguments, DataArguments, TrainingArguments),
    "check": (ModelArguments, DataArguments, WorldModelArguments),
    "predict": (InferenceArguments, ModelArguments, DataArguments),
    "eval": (InferenceArguments, ModelArguments, DataArguments),
    "plan": (InferenceArguments, ModelArguments, DataArguments),
    "export": (InferenceArguments, ModelArguments),
    "encode": (EncodeArguments,),
    "retrieve": (RetrieveArguments,),
    "api": (ApiArguments, ModelArguments, InferenceArguments),
    "webui": (WebuiArguments,),
}


def print_help(command: str = "train", description: str = "") -> None:
    """The keys `command` reads, with their defaults and help text, its own groups first (world-model keys before
    the hundreds of Hugging Face training keys)."""
    parser = HfArgumentParser(HELP_GROUPS.get(command, ALL_DATACLASSES), prog=f"wmfactory {command}",
                              usage=f"wmfactory {command} [CONFIG.yaml] [key=value ...]   (or --key value ...)",
                              description=description, add_help=False)
    parser.print_help()
