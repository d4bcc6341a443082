"""One parser for every way a run is configured: a YAML file with `key=value` overrides, `--flag value` arguments,
or a dict. All of them become one flat dict of LLaMA-Factory keys, checked against the dataclasses, then parsed.
OmegaConf reads the files and overrides (as in LLaMA-Factory) and converts each value to its field's type."""

import dataclasses
import difflib
import enum
import importlib.util
import json
import math
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from omegaconf import BooleanNode, DictConfig, FloatNode, IntegerNode, OmegaConf, StringNode
from omegaconf.errors import KeyValidationError, OmegaConfBaseException
from transformers import HfArgumentParser
from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

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
# the OmegaConf node that converts a value to each plain field type (`"1e-4"` to 0.0001, `"true"` to True)
NODES = {bool: BooleanNode, int: IntegerNode, float: FloatNode, str: StringNode}
# OmegaConf reads YAML 1.1, where these words are booleans: `save_strategy: no` arrives as False
YAML_BOOLEAN_WORDS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}
KIND_NAMES = {bool: "true or false", dict: "a mapping", list: "a list", str: "a string"}
# `stage: wm` runs: the keys a run leaves unset take the recommended recipe's values (README, "Defaults of stage
# wm"). Hugging Face's (5e-5, a linear schedule, 8 rows a step, 3 epochs) suit weights that already do their job;
# a world model's projector and head start from nothing, and with those it barely leaves its frame.
WM_DEFAULTS = {"learning_rate": 1e-3, "lr_scheduler_type": "cosine", "warmup_steps": 0.05,
               "per_device_train_batch_size": 16, "lora_rank": 16}
WM_UNROLL_STEPS = 2  # `unroll_steps` unless set; the model keeps 1 where a head's mean is not cheap (`diffusion`)
WM_MIN_STEPS = 600  # without `max_steps` and `num_train_epochs`: 3 epochs, or this many steps where they are fewer
# any of these keys says how the run evaluates and keeps checkpoints; with none of them, a stage wm run holds out
# `WM_VALIDATION["val_size"]` of its training rows and keeps the checkpoint whose rollouts are best on them
VALIDATION_KEYS = {"val_size", "eval_dataset", "eval_strategy", "eval_steps", "save_strategy", "save_steps",
                   "load_best_model_at_end", "metric_for_best_model"}
WM_VALIDATION = {"val_size": 0.1, "eval_rollout_steps": 8, "eval_steps": 0.1, "save_total_limit": 2,
                 "metric_for_best_model": "eval_rollout_mse"}


def load_yaml(text_or_stream) -> Any:
    """A YAML value (a form's input, a whole file) read as a `key=value` override reads its value."""
    text = text_or_stream.read() if hasattr(text_or_stream, "read") else text_or_stream
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))["value"]
    except (OmegaConfBaseException, ValueError) as err:  # `${x`, `!!set {a}`: the error its callers catch
        raise yaml.YAMLError(" ".join(str(err).split())) from None


def read_args(args: Union[dict[str, Any], list[str], None] = None) -> dict[str, Any]:
    """Turn `args` (default: `sys.argv[1:]`) into one flat dict.

    - a dict is used as it is;
    - `["cfg.yaml", "key=value", ...]`: the YAML file (or .json) with the overrides merged on top (OmegaConf);
    - `["--key", "value", "--flag", ...]`: command-line flags (`--flag` alone means true), values as strings.
    """
    if isinstance(args, dict):
        return dict(args)
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        config = _load_config_file(argv[0])
        return OmegaConf.to_container(OmegaConf.merge(config, *map(_read_override, argv[1:])))
    config, i = {}, 0
    while i < len(argv):
        if not argv[i].startswith("--"):
            raise ConfigError(f"Unexpected argument '{argv[i]}': use --key value (or a YAML file as first argument).")
        key, value = argv[i][2:], "true"
        if "=" in key:
            key, value = key.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            i, value = i + 1, argv[i + 1]
        config[key.replace("-", "_")] = value
        i += 1
    return config


def _read_override(item: str) -> DictConfig:
    if "=" not in item or item.startswith("-"):
        raise ConfigError(f"Override '{item}' must look like key=value (e.g. learning_rate=1e-4).")
    try:
        return OmegaConf.from_dotlist([item])
    except (ValueError, yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"Override '{shown(item)[:200]}': the value cannot be parsed "
                          f"({' '.join(str(err).split())[:200]}).") from None


def _load_config_file(path: str) -> DictConfig:
    """The file as an OmegaConf mapping; any mistake in it as one line (with its line and column when known)."""
    if not Path(path).is_file():
        raise ConfigError(f"Config file '{path}' not found.")
    not_a_mapping = ConfigError(f"Config file '{path}' must hold a mapping of keys to values.")
    not_named = ConfigError(f"Config file '{path}': every key must be a string, such as learning_rate.")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                config = OmegaConf.create(json.load(f))
        else:
            config = OmegaConf.load(path)
    except json.JSONDecodeError as err:
        raise ConfigError(f"Config file '{path}', line {err.lineno}, column {err.colno}: {err.msg}") from None
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark or err.context_mark, f" ({err.context})" if err.context else ""
        place = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"Config file '{path}'{place}: {err.problem}{context}") from None
    except KeyValidationError:  # a `null:` key
        raise not_named from None
    except OSError as err:  # OmegaConf refuses a document that is a single number or date with an error of no errno
        if err.errno is None:
            raise not_a_mapping from None
        raise ConfigError(f"Config file '{path}' cannot be read: {err.strerror or err}.") from None
    except (ValueError, yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"Config file '{path}' cannot be parsed: {' '.join(str(err).split())}") from None
    if not isinstance(config, DictConfig):
        raise not_a_mapping
    if not all(isinstance(key, str) for key in config):  # `1:` or `true:`
        raise not_named
    return config


def _field_types(classes) -> dict[str, Any]:
    types_by_key = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                types_by_key[f.name] = hints.get(f.name, f.type)
    return types_by_key


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Give a value the type its field declares, so that `1e-4`, `true` and `8` work anywhere: OmegaConf converts
    to the plain types (bool, int, float, str); choices and unions are checked here. Each refusal names the key."""
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(f"`{key}` '{shown(value)}' holds a NUL byte, which no path, name or value can.")
    union = typing.get_origin(annotation) in (Union, types.UnionType)
    members = [m for m in (typing.get_args(annotation) if union else (annotation,)) if m is not type(None)]
    optional = union and len(members) < len(typing.get_args(annotation))
    if optional and (value is None or str not in members and isinstance(value, str) and value.lower() in
                     ("none", "null")):
        return None
    choices = [c for m in members for c in (typing.get_args(m) if typing.get_origin(m) is Literal else
                                            [e.value for e in m] if isinstance(m, enum.EnumMeta) else ())]
    enums = [m for m in members if isinstance(m, enum.EnumMeta)]
    if choices and all(typing.get_origin(m) is Literal or m in enums or m is str and enums for m in members):
        if isinstance(value, bool):
            value = next((c for c in choices if str(c).lower() in YAML_BOOLEAN_WORDS[value]), value)
        if value not in choices:
            raise ConfigError(f"`{key}` must be one of {', '.join(map(str, choices))}, got '{_short(value)}'.")
        return value
    if len(members) == 1 and members[0] in NODES:
        kind = members[0]
        if kind is str and isinstance(value, bool):
            if key == "resume_from_checkpoint":  # true: the newest checkpoint; false: none
                return "true" if value else None
            raise ConfigError(f"`{key}` must be a string (quote it), got bool '{value}'.")  # YAML 1.1 read `no` so
        if kind is int and isinstance(value, float) and value.is_integer():  # `max_steps: 1e3`
            value = int(value)
        try:
            value = OmegaConf.to_container(OmegaConf.create({key: NODES[kind](value, is_optional=optional)}))[key]
            if isinstance(value, kind) or value is None:  # not an `${interpolation}`, which nothing resolves
                return value
        except (OmegaConfBaseException, OverflowError):  # OverflowError: an integer beyond float
            pass
        name = f"a number ({kind.__name__})" if kind in (int, float) else KIND_NAMES[kind]
        got = "" if kind in (bool, int, float) else f"{type(value).__name__} "
        raise ConfigError(f"`{key}` must be {name}, got {got}'{_short(value)}'.")
    kinds = {typing.get_origin(m) or m for m in members}
    kinds = tuple(k for k in kinds | {type(c) for c in choices} if isinstance(k, type))
    if len(members) > 1 and kinds and not isinstance(value, kinds):  # e.g. a number where a mapping or a path goes
        names = " or ".join(sorted({KIND_NAMES.get(k, k.__name__) for k in kinds}))
        raise ConfigError(f"`{key}` must be {names}, got {type(value).__name__} '{_short(value)}'.")
    return value


def _short(value: Any) -> str:
    """A value for a one-line message: at most 60 characters, control characters escaped."""
    try:
        text = str(value)
    except ValueError:  # an integer of more digits than Python prints
        text = "a number of thousands of digits"
    return shown(text if len(text) <= 60 else text[:57] + "...")


def normalize_args(config: dict[str, Any], classes=ALL_DATACLASSES) -> dict[str, Any]:
    """Apply aliases, reject unknown keys with the closest known one, and coerce values to their field types."""
    known = _field_types(classes)
    normalized = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise ConfigError(f"Every key must be a string, such as learning_rate; got {type(key).__name__} "
                              f"'{_short(key)}'.")
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
    _check_accelerator_config(config.get("accelerator_config"))
    try:
        return parser.parse_dict(normalize_args(config, classes), allow_extra_keys=False)
    except DataError:
        raise
    except (ValueError, OverflowError) as err:
        raise ConfigError(" ".join(str(err).split())) from None
    except OSError as err:  # a key naming a file Hugging Face reads (accelerator_config, deepspeed, fsdp_config)
        raise ConfigError(f"cannot read '{err.filename}': {err.strerror or err}.") from None


def _check_accelerator_config(value: Any) -> None:
    """`accelerator_config` given inline: its keys are `AcceleratorConfig`'s (Hugging Face passes them as keyword
    arguments, and an unknown one would be a TypeError from inside `TrainingArguments`)."""
    if not isinstance(value, dict):
        return
    from transformers.trainer_pt_utils import AcceleratorConfig

    known = {f.name for f in dataclasses.fields(AcceleratorConfig)}
    unknown = sorted(str(key) for key in value if key not in known)
    if unknown:
        raise ConfigError(f"`accelerator_config` has unknown key `{shown(unknown[0])}` (known: "
                          f"{', '.join(sorted(known))}).")


@dataclass
class TrainArgs:
    """`wmfactory train` / `python -m wmfactory.train.tuner`."""

    model: ModelArguments
    data: DataArguments
    training: TrainingArguments
    finetuning: FinetuningArguments
    world_model: WorldModelArguments
    # the stage wm defaults that need the data or the model (applied by `train.wm.workflow`): "length" (no
    # `max_steps` or `num_train_epochs`), "validation" (none of `VALIDATION_KEYS`), "unroll" (`unroll_steps` is
    # `WM_UNROLL_STEPS` where every head's mean is cheap, else 1)
    data_defaults: frozenset = frozenset()


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


def _wm_defaults(config: dict[str, Any]) -> frozenset:
    """Give a `stage: wm` training config the recipe's values of the keys it leaves unset (`WM_DEFAULTS`,
    `WM_UNROLL_STEPS`); return which defaults wait for the data (`TrainArgs.data_defaults`)."""
    if config.get("stage") != "wm":
        return frozenset()
    given = {KEY_ALIASES.get(key, key) for key in config}
    applied = {key: value for key, value in WM_DEFAULTS.items() if key not in given}
    waiting = set()
    if "unroll_steps" not in given and "scheduled_sampling_prob" not in given:
        applied["unroll_steps"] = WM_UNROLL_STEPS
        waiting.add("unroll")  # the heads decide at model build whether they unroll (`PredictionHead.mean_is_cheap`)
    config.update(applied)
    if applied:
        logger.info("stage wm defaults: " + ", ".join(f"{key} {value:g}" if isinstance(value, float) else
                                                      f"{key} {value}" for key, value in applied.items())
                    + " (set a key to change it).")
    if not given & {"max_steps", "num_train_epochs"}:
        waiting.add("length")
    if not given & VALIDATION_KEYS:
        waiting.add("validation")
        config.setdefault("eval_rollout_steps", WM_VALIDATION["eval_rollout_steps"])
    return frozenset(waiting)


def _parse(config: dict[str, Any], train: bool) -> tuple[dict[str, Any], tuple]:
    if train:
        config.setdefault("do_train", True)  # LLaMA-Factory configs say it; the seed's command line does not
    else:
        config["do_train"] = False
    if config.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:  # before transformers trips on it
        raise ConfigError("`deepspeed` is set but DeepSpeed is not installed: `pip install deepspeed`, or unset it.")
    if isinstance(config.get("report_to"), str):  # `report_to: tensorboard,trackio`: several trackers
        config["report_to"] = [name.strip() for name in config["report_to"].split(",")]
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
    config = read_args(args)
    data_defaults = _wm_defaults(config)
    config, parsed = _parse(config, train=True)
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
    if (finetuning.stage == "wm" and world_model.missing_values == "mask"
            and world_model.world_model_loss_type == "l2"):
        logger.warning("`missing_values: mask` with `world_model_loss_type: l2`: the targets that gaps in their "
                       "history make unpredictable dominate a squared loss; `world_model_loss_type: l1` learns much "
                       "more (README, Missing values).")
    if finetuning.stage == "wm" and world_model.missing_values == "mask" and not world_model.missing_refills:
        logger.info("`missing_values: mask`: training reads each gap as the frame's linear fill. `missing_refills: N` "
                    "has the model fill the training rows' gaps N times during the run, which forecasts better at "
                    "the cost of one fill of every row each time (README, Missing values).")
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
    return TrainArgs(model, data, training, finetuning, world_model, data_defaults)


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
    unknown = [name for name in training.report_to if not isinstance(name, str) or name not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise ConfigError(f"`report_to` names {', '.join(map(_short, unknown))}, which transformers does not report "
                          f"to: use none, all or any of {', '.join(INTEGRATION_TO_CALLBACK)}.")
    missing = [name for name in training.report_to if not _tracker_installed(name)]
    if missing:
        raise ConfigError(f"`report_to` names {', '.join(missing)}, which is not installed: `pip install "
                          f"{' '.join(TRACKER_PACKAGES.get(name, name) for name in missing)}`, or set report_to: none.")


# the pip package of each `report_to` tracker whose name is not its package's
TRACKER_PACKAGES = {"azure_ml": "azureml-core", "flyte": "flytekit"}


def _tracker_installed(name: str) -> bool:
    """As transformers tells (tensorboard: tensorboard or tensorboardX); flyte, which its list leaves out: flytekit."""
    if name == "flyte":
        return importlib.util.find_spec("flytekit") is not None
    return name in get_available_reporting_integrations()


def get_check_args(args: Union[dict[str, Any], list[str], None] = None) -> CheckArgs:
    _, (model, data, training, _, world_model, _) = _parse(read_args(args), train=False)
    if not data.dataset_names + data.eval_dataset_names:
        raise ConfigError("`dataset` is required: the dataset(s) to check.")
    return CheckArgs(model, data, training, world_model)


def get_predict_args(args: Union[dict[str, Any], list[str], None] = None) -> PredictArgs:
    config, (model, data, training, _, world_model, inference) = _parse(read_args(args), train=False)
    given = frozenset(KEY_ALIASES.get(key, key) for key in config)
    if not data.dataset_names:
        raise ConfigError("`dataset` is required: the rows to predict (a name registered in dataset_info.json).")
    if "output_dir" not in given:
        raise ConfigError("`output_dir` is required: where the results are written.")
    return PredictArgs(model, data, training, world_model, inference, given)


def get_export_args(args: Union[dict[str, Any], list[str], None] = None) -> ExportArgs:
    _, (model, _, training, _, _, inference) = _parse(read_args(args), train=False)
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

    return torch.accelerator.is_available()


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
