"""The Train form, generated from the argument dataclasses that `wmfactory train` reads (`TrainArgs`): every
field becomes one input with its name as label and its `help` as description, so a new key appears here by
itself. The form's values become the same flat dict of keys a YAML file holds, typed by the CLI's own parser."""

import dataclasses
import enum
import os
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional

import yaml

from ..extras.errors import ConfigError
from ..hparams import (
    DataArguments,
    FinetuningArguments,
    ModelArguments,
    TrainArgs,
    TrainingArguments,
    WorldModelArguments,
)
from ..hparams.parser import WM_DEFAULTS, WM_UNROLL_STEPS, load_yaml, normalize_args

# the dataclasses `wmfactory train` parses, in the order of `TrainArgs`
TRAIN_DATACLASSES: tuple[type, ...] = tuple(t for t in typing.get_type_hints(TrainArgs).values()
                                           if dataclasses.is_dataclass(t))
# the README's sections (Parameters), in the order the form shows them
SECTIONS = {ModelArguments: "Model and method", FinetuningArguments: "Model and method", DataArguments: "Dataset",
            WorldModelArguments: "World model", TrainingArguments: "Output and training loop"}
SECTION_ORDER = ("Model and method", "Dataset", "World model", "Output and training loop")
OTHER_TRAINING_SECTION = "Every other Hugging Face TrainingArguments key"
# the Hugging Face keys the README names in "Output and training loop"; every other key of theirs is in a closed
# section of its own
COMMON_TRAINING_KEYS = (
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "learning_rate", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "lr_scheduler_type", "warmup_steps",
    "logging_steps", "save_strategy", "save_steps", "save_total_limit", "eval_strategy", "eval_steps",
    "per_device_eval_batch_size", "bf16", "fp16", "seed", "report_to", "use_cpu",
)
# the keys whose default under stage wm is not their dataclass's (parser.WM_DEFAULTS): a value left as shown is not
# written, and the parser fills the same one
STAGE_WM_DEFAULTS = {**WM_DEFAULTS, "unroll_steps": WM_UNROLL_STEPS}
# keys written into the YAML even when they hold their default, so the file says what it trains on
ALWAYS_WRITTEN = ("stage", "model_name_or_path", "dataset", "dataset_dir", "output_dir")
DATASET_KEYS = ("dataset", "eval_dataset")  # picked from dataset_info.json
BOOL_CHOICES = ("", "true", "false")  # an optional bool: unset, true or false


@dataclass(frozen=True)
class FormField:
    """One input of the form. `kind`: `bool` (a checkbox), `choice` (a dropdown of `choices`), `dataset` (a
    dropdown of registered datasets, several allowed) or `text` (typed by the parser). `default` is what the
    dataclass holds, as the input shows it."""

    name: str
    section: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()


def form_fields() -> list[FormField]:
    """Every init field of every dataclass of `TrainArgs`, once (the first dataclass that declares it wins, as in
    the parser), in section order."""
    seen, fields = set(), []
    for cls in TRAIN_DATACLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init or f.name in seen or f.name.startswith("_"):
                continue
            seen.add(f.name)
            section = SECTIONS[cls]
            if cls is TrainingArguments and f.name not in COMMON_TRAINING_KEYS and f.name not in vars(cls).get(
                    "__annotations__", {}):
                section = OTHER_TRAINING_SECTION
            field = _form_field(f, hints[f.name], section)
            if f.name in STAGE_WM_DEFAULTS:  # the board trains world models: it shows what a stage wm run trains with
                field = dataclasses.replace(
                    field, default=as_text(STAGE_WM_DEFAULTS[f.name]),
                    help=f"{field.help} Stage wm default: {STAGE_WM_DEFAULTS[f.name]} (stage sft: {field.default}).")
            fields.append(field)
    order = {name: i for i, name in enumerate(SECTION_ORDER + (OTHER_TRAINING_SECTION,))}
    return sorted(fields, key=lambda field: order[field.section])


def _form_field(f: dataclasses.Field, annotation: Any, section: str) -> FormField:
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    help_text = " ".join(str(f.metadata.get("help", "")).split())
    members = [a for a in typing.get_args(annotation) if a is not type(None)] if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else [annotation]
    optional = len(members) < len(typing.get_args(annotation))
    if f.name in DATASET_KEYS:
        return FormField(f.name, section, "dataset", _names(default), help_text)
    if members == [bool]:
        if optional:
            return FormField(f.name, section, "choice", as_text(default), help_text, BOOL_CHOICES)
        return FormField(f.name, section, "bool", bool(default), help_text)
    if len(members) == 1 and typing.get_origin(members[0]) is Literal:
        choices = tuple(str(c) for c in typing.get_args(members[0]))
        return FormField(f.name, section, "choice", as_text(default), help_text, ("",) * optional + choices)
    return FormField(f.name, section, "text", as_text(default), help_text)


def as_text(value: Any) -> str:
    """How a text input shows a value: nothing for None, YAML flow style for lists and dicts."""
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict, tuple)):
        return yaml.safe_dump(_plain(value), default_flow_style=True, width=10**6).strip()
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _names(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return [str(name) for name in value]


def board_defaults(saves_dir: str, dataset_dir: str) -> dict[str, Any]:
    """The values the board starts the form with where they differ from the CLI's defaults: a world model (stage
    wm) trained into saves_dir, logged often enough to draw its curves, with its loss curves as PNG."""
    return {"stage": "wm", "dataset_dir": dataset_dir, "output_dir": os.path.join(saves_dir, "run-1"),
            "logging_steps": "10", "plot_loss": True}


def initial_values(fields: list[FormField], saves_dir: str, dataset_dir: str) -> list[Any]:
    preset = board_defaults(saves_dir, dataset_dir)
    return [preset.get(f.name, f.default) for f in fields]


def form_config(fields: list[FormField], values: list[Any]) -> dict[str, Any]:
    """The form's values -> the flat dict of keys the YAML file holds: every key whose value differs from its
    dataclass default (and `ALWAYS_WRITTEN`), typed and checked by the CLI's parser (a ConfigError names the
    key)."""
    if len(values) != len(fields):
        raise ConfigError(f"the form sent {len(values)} values for {len(fields)} keys.")
    raw: dict[str, Any] = {}
    for field, value in zip(fields, values):
        if field.kind == "dataset":
            names = _names(value)
            if names != field.default or field.name in ALWAYS_WRITTEN:
                raw[field.name] = ",".join(names) if names else None
            continue
        if field.kind == "bool":
            if bool(value) != field.default or field.name in ALWAYS_WRITTEN:
                raw[field.name] = bool(value)
            continue
        text = "" if value is None else str(value).strip()
        if text == field.default and field.name not in ALWAYS_WRITTEN:
            continue
        raw[field.name] = _value_of(text)
    # an emptied input means "not set": the key keeps its default, as when a YAML file leaves it out
    config = normalize_args({key: value for key, value in raw.items() if value is not None}, TRAIN_DATACLASSES)
    return {field.name: config[field.name] for field in fields if field.name in config}


def _value_of(text: str) -> Any:
    """A text input's value as a YAML value (numbers, lists and dicts typed as in a YAML file), None when empty."""
    if text == "":
        return None
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def config_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True, width=120)


def config_path(board_folder: str, output_dir: Optional[str]) -> str:
    """Where the board writes the YAML of a run: `<saves_dir>/.webui/<output_dir as a name>.yaml`."""
    folder = os.path.normpath(output_dir or "run")
    inside = os.path.relpath(os.path.abspath(folder), os.path.abspath(os.path.dirname(board_folder)))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", folder if inside.startswith("..") else inside).strip("_.") or "run"
    return os.path.join(board_folder, f"{name}.yaml")


def check_train_config(config: dict[str, Any]) -> None:
    """What `wmfactory train` would refuse before loading anything, found now: the parser's checks (a negative
    learning rate, a missing output_dir), a base model, datasets registered in dataset_info.json, and an
    output_dir that holds another run without checkpoints."""
    from ..data.registry import get_dataset_attrs
    from ..hparams import get_train_args
    from ..train.checkpoints import resolve_resume

    if not config.get("model_name_or_path"):
        raise ConfigError("`model_name_or_path` is required: a local folder or hub id of a causal LM.")
    args = get_train_args(dict(config))
    get_dataset_attrs(args.data.dataset_names + args.data.eval_dataset_names, args.data.dataset_dir)
    resolve_resume(args.training)


def registered_datasets(dataset_dir: str) -> list[str]:
    """The names in `<dataset_dir>/dataset_info.json` (none when it is missing or unreadable)."""
    import json

    try:
        with open(os.path.join(dataset_dir or ".", "dataset_info.json"), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return []
    return sorted(info) if isinstance(info, dict) else []

