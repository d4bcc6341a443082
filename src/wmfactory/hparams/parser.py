"""One parser for every way a run is configured: a YAML file with `key=value` overrides, `--flag value` arguments,
or a dict. All of them become one flat dict of LLaMA-Factory keys, checked against the dataclasses, then parsed."""

import dataclasses
import difflib
import importlib.util
import json
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from transformers import HfArgumentParser, set_seed

from ..extras.errors import DataError
from ..extras.logging import get_logger
from ..train.checkpoints import newest_complete_checkpoint
from .data_args import DataArguments
from .finetuning_args import FinetuningArguments
from .inference_args import InferenceArguments
from .model_args import ModelArguments
from .training_args import TrainingArguments

logger = get_logger(__name__)

# every command reads the same keys, so that one YAML file serves train, predict, eval and export
ALL_DATACLASSES = (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, InferenceArguments)
# `warmup_ratio` (LLaMA-Factory, transformers 4) is `warmup_steps` below 1 in transformers 5
KEY_ALIASES = {"model_name": "model_name_or_path", "warmup_ratio": "warmup_steps"}
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
                raise ValueError(f"Override '{item}' must look like key=value (e.g. learning_rate=1e-4).")
            key, value = item.split("=", 1)
            config[key.strip()] = load_yaml(value) if value.strip() else ""
        return config
    i = 0
    while i < len(argv):
        item = argv[i]
        if not item.startswith("--"):
            raise ValueError(f"Unexpected argument '{item}': use --key value (or a YAML file as first argument).")
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
        raise ValueError(f"Config file '{path}' not found.")
    with open(file, encoding="utf-8") as f:
        content = json.load(f) if file.suffix == ".json" else load_yaml(f)
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"Config file '{path}' must hold a mapping of keys to values.")
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
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"`{key}` must be one of {', '.join(map(str, choices))}, got '{value}'.")
        return value
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
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
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in _TRUE:
            return True
        if str(value).lower() in _FALSE:
            return False
        raise ValueError(f"`{key}` must be true or false, got '{value}'.")
    if annotation in (int, float) and not isinstance(value, bool):
        try:
            number = float(value)
            if annotation is int:
                if number != int(number):
                    raise ValueError
                return int(number)
            return number
        except (TypeError, ValueError):
            raise ValueError(f"`{key}` must be a number ({annotation.__name__}), got '{value}'.") from None
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def normalize_args(config: dict[str, Any], classes=ALL_DATACLASSES) -> dict[str, Any]:
    """Apply aliases, reject unknown keys with the closest known one, and coerce values to their field types."""
    known = _field_types(classes)
    normalized = {}
    for key, value in config.items():
        key = KEY_ALIASES.get(key, key)
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ValueError(f"Unknown key `{key}`.{hint}")
        normalized[key] = _coerce(key, value, known[key])
    return normalized


def parse_dict(config: dict[str, Any], classes=ALL_DATACLASSES) -> tuple:
    parser = HfArgumentParser(classes)
    return parser.parse_dict(normalize_args(config, classes), allow_extra_keys=False)


def get_train_args(args: Union[dict[str, Any], list[str], None] = None) -> tuple[
    ModelArguments, DataArguments, TrainingArguments, FinetuningArguments
]:
    try:
        return _get_train_args(args)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"invalid configuration: {err}") from None


def _with_device_default(config: dict[str, Any]) -> dict[str, Any]:
    if "use_cpu" not in config and not _has_accelerator():
        # On a machine without GPU, run on the CPU (so `bf16` means CPU autocast and torchrun uses gloo DDP).
        config["use_cpu"] = True
    return config


def get_infer_args(args: Union[dict[str, Any], list[str], None] = None) -> tuple:
    """For predict, eval and export: the five argument groups and the set of keys the user gave."""
    try:
        config = _with_device_default(read_args(args))
        config["do_train"] = False
        given = {KEY_ALIASES.get(key, key) for key in config}
        return (*parse_dict(config), given)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"invalid configuration: {err}") from None


def _get_train_args(args):
    config = read_args(args)
    config.setdefault("do_train", True)  # LLaMA-Factory configs say it; the seed's command line does not
    if config.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise ValueError("`deepspeed` is set but DeepSpeed is not installed: `pip install deepspeed`.")
    model_args, data_args, training_args, finetuning_args, _ = parse_dict(_with_device_default(config))

    if not data_args.dataset_names and training_args.do_train:
        raise ValueError("`dataset` is required for training (a name registered in dataset_info.json).")
    if training_args.output_dir is None:
        raise ValueError("`output_dir` is required.")
    if model_args.adapter_name_or_path and finetuning_args.finetuning_type != "lora":
        raise ValueError("`adapter_name_or_path` needs `finetuning_type: lora`.")
    # The collator needs the world-model columns, which no model signature names.
    training_args.remove_unused_columns = False
    if training_args.ddp_find_unused_parameters is None:
        # every trainable parameter takes part in every step (the projector and head run even on empty batches)
        training_args.ddp_find_unused_parameters = False
    _resolve_resume(training_args)
    set_seed(training_args.seed)  # before the model is built, so that the projector and head start the same
    return model_args, data_args, training_args, finetuning_args


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or (
        torch.backends.mps.is_available()
    )


def _resolve_resume(training_args: TrainingArguments) -> None:
    """LLaMA-Factory's rule: resume from the newest checkpoint in `output_dir` unless told to overwrite it."""
    output_dir = training_args.output_dir
    if str(training_args.resume_from_checkpoint).lower() == "true":  # `resume_from_checkpoint: true`: the newest
        found = newest_complete_checkpoint(output_dir)
        if found is None:
            raise ValueError(f"`resume_from_checkpoint: true` but '{output_dir}' holds no complete checkpoint.")
        training_args.resume_from_checkpoint = found
    if not training_args.do_train or training_args.overwrite_output_dir or not os.path.isdir(output_dir):
        return
    if training_args.resume_from_checkpoint is not None:
        return
    last_checkpoint = newest_complete_checkpoint(output_dir)
    if last_checkpoint is not None:
        training_args.resume_from_checkpoint = last_checkpoint
        logger.info(f"Resuming training from {last_checkpoint} (set `overwrite_output_dir: true` to start afresh).")
    elif any(name != "runs" and not name.startswith("checkpoint-") for name in os.listdir(output_dir)):
        raise ValueError(
            f"Output directory '{output_dir}' already exists and is not empty, and holds no checkpoint. "
            "Set `overwrite_output_dir: true` to train into it anyway."
        )
