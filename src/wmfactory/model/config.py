"""`WorldModelConfig`: the configuration of a world model, saved as `config.json` beside its weights.

It nests the language model's own configuration (`text_config`, as LLaVA nests its text model's) and holds every
world-model key of `WorldModelArguments` under the same name and default, plus where the weights came from."""

import dataclasses
import json
import math
import typing
from typing import Any, Optional

from transformers import AutoConfig, PretrainedConfig

from .. import __version__
from ..data.streams import StreamKind, is_condition, kind_of, kind_patterns
from ..extras.errors import DataError
from ..hparams.world_model_args import MAX_FILL_STEPS, WorldModelArguments, parse_patterns, resolve_frame

WORLD_MODEL_KEYS = tuple(f.name for f in dataclasses.fields(WorldModelArguments))
# a configuration without these keys (a folder saved before they existed, or with them at these values, which the
# diff of `to_json_file` leaves out) has the frame they meant then; a new model's resolves `auto` (`from_arguments`)
FRAME_BEFORE_AUTO = {"frame_form": "levels", "frame_step": "global"}


class WorldModelConfig(PretrainedConfig):
    model_type = "wmfactory_world_model"
    sub_configs = {"text_config": AutoConfig}

    def __init__(
        self,
        text_config: Optional[Any] = None,
        base_model_name_or_path: Optional[str] = None,
        finetuning_type: str = "full",
        template: Optional[str] = None,
        wmfactory_version: str = __version__,
        streams: Optional[dict[str, int]] = None,
        **kwargs,
    ):
        defaults = WorldModelArguments()
        for key in WORLD_MODEL_KEYS:
            setattr(self, key, kwargs.pop(key, FRAME_BEFORE_AUTO.get(key, getattr(defaults, key))))
        self.base_model_name_or_path = base_model_name_or_path  # the LLM a LoRA adapter applies to
        self.finetuning_type = finetuning_type
        self.template = template
        self.wmfactory_version = wmfactory_version
        # {stream: dimension}, sorted by name (None in folders of 0.2 and before: one stream, any key)
        self.streams = dict(streams) if streams else None
        # `predict_residual: ridge` with condition streams: the frame's ridge also reads the last conditions (absent,
        # hence False, in folders saved before it did)
        self.ridge_conditions = bool(kwargs.pop("ridge_conditions", False))
        # {stream: {"history": j, "penalty": p, ...}}: what the ridges fitted on the training split chose (`ridge_select`)
        self.ridge_choice = dict(kwargs.pop("ridge_choice", None) or {})
        # the sampling temperature of each horizon band of a rollout (band b: horizons 2^b .. 2^(b+1) - 1, so 1, 2-3,
        # 4-7, 8-15, ...), chosen after training (calibration.py); the last band's holds beyond; empty:
        # `sampling_temperature` at every horizon
        self.horizon_temperatures = [float(t) for t in kwargs.pop("horizon_temperatures", None) or []]
        kwargs.setdefault("tie_word_embeddings", False)  # the language model ties its own weights
        super().__init__(**kwargs)
        # set after the base class, whose attention-implementation setter would otherwise reset the LM's own
        if isinstance(text_config, dict):
            text_config = dict(text_config)
            text_config = AutoConfig.for_model(text_config.pop("model_type"), **text_config)
        self.text_config = text_config

    @classmethod
    def from_arguments(cls, arguments: WorldModelArguments, text_config, streams: dict[str, int] | int, **kwargs):
        """The configuration of a new world model: the keys of `arguments`, and the streams `{name: dimension}` found
        in the data (a number: one stream `m` of that dimension). `embedding_dim` becomes the widest stream's."""
        if isinstance(streams, int):
            streams = {"m": streams}
        keys = dataclasses.asdict(arguments)
        keys["embedding_dim"] = max(streams.values())
        keys["frame_form"], keys["frame_step"] = resolve_frame(arguments)
        patterns = parse_patterns(arguments.condition_streams)  # the streams given in the future
        kwargs.setdefault("ridge_conditions", arguments.predict_residual == "ridge"
                          and any(is_condition(name, patterns) for name in streams))
        return cls(text_config=text_config, streams=streams, **keys, **kwargs)

    def temperature_at(self, horizon: Optional[int] = None) -> float:
        """The calibrated sampling temperature at rollout `horizon` (1: the first generated group of the stream); a
        teacher-forced draw (None) takes `sampling_temperature`."""
        if horizon is None or not self.horizon_temperatures:
            return self.sampling_temperature
        return self.horizon_temperatures[min(horizon_band(horizon), len(self.horizon_temperatures) - 1)]

    def to_json_file(self, json_file_path, use_diff: bool = True) -> None:
        """config.json written whole or not at all (a checkpoint counts as complete once its config.json parses)."""
        from ..extras.atomic import write_text

        write_text(str(json_file_path), self.to_json_string(use_diff=use_diff))

    @property
    def hidden_size(self) -> int:
        return self.text_config.get_text_config().hidden_size

    @property
    def stream_dims(self) -> dict[str, int]:
        """`{stream: dimension}`; a model of one stream takes the vectors of every key as that stream."""
        return self.streams or {"m": self.embedding_dim}

    @property
    def ridge_frame(self) -> bool:
        """`predict_residual: ridge`: the head's frame starts at the forecast of the ridge on the last `ridge_history`
        vectors of the stream (and of the condition streams, with `ridge_conditions`)."""
        return self.predict_residual == "ridge"

    @property
    def sole_stream(self) -> Optional[str]:
        """The stream of a model of one stream, which takes the vectors of every key as that stream (a model trained
        on `<m1>` rows reads `<x1>` rows too); None with several streams. The one place of that rule:
        `model_stream` and `row_dims` read it."""
        dims = self.stream_dims  # read once: every attribute of a transformers config costs a slow lookup
        return next(iter(dims)) if len(dims) == 1 else None

    def model_stream(self, name: Optional[str]) -> str:
        """The model's stream that the vectors of stream `name` (a key without its trailing digits) go to: `name`
        itself, or the model's only stream whatever `name` is (None too)."""
        sole = self.sole_stream
        if sole is not None:
            return sole
        dims = self.stream_dims
        if name not in dims:
            raise DataError(f"vectors of stream '{name}', which this model does not have (its streams: "
                            f"{list(dims)}; a stream is a placeholder key without its trailing digits).")
        return name

    @property
    def row_dims(self) -> dict[str, int] | int:
        """The dimensions the data layer checks a row's vectors against (`embedding_dim` of `encode_row`,
        `get_dataset`): each stream's, or the only stream's for the vectors of every key."""
        return self.stream_dims if self.sole_stream is None else self.embedding_dim

    @property
    def condition_patterns(self) -> tuple[str, ...]:
        return parse_patterns(self.condition_streams)

    def stream_kind(self, stream: str) -> StreamKind:
        """The kind of `stream` (`data.streams.STREAM_KINDS`: state, condition, ...), from the world-model keys that
        select kinds (`condition_streams`)."""
        return kind_of(stream, kind_patterns(self))

    def is_condition(self, stream: str) -> bool:
        """An input only: the model has no head for it and never predicts it (a condition or a past-only stream)."""
        return not self.stream_kind(stream).predicted

    def is_given(self, stream: str) -> bool:
        """A stream whose future vectors a rollout or plan takes from the caller (`conditions`): a condition."""
        return self.stream_kind(stream).given_in_future

    @property
    def given_streams(self) -> list[str]:
        """The streams a rollout takes from the caller (`condition_streams`), in `stream_dims` order."""
        return [name for name in self.stream_dims if self.is_given(name)]

    @property
    def frame_conditions(self) -> list[tuple[str, int]]:
        """The condition streams `(name, dimension)` whose last `ridge_history` vectors the ridge frame reads besides
        the stream's own (in `stream_dims` order; empty unless `ridge_conditions`)."""
        if not self.ridge_conditions:
            return []
        return [(name, d) for name, d in self.stream_dims.items() if self.is_given(name)]

    @property
    def predicted_streams(self) -> list[str]:
        return [stream for stream in self.stream_dims if not self.is_condition(stream)]

    @property
    def predicts_embeddings(self) -> bool:
        """Whether the prediction head is run and trained: `stage: wm`. Under `stage: sft` the embedding loss weight
        is 0, the vectors are inputs only."""
        return self.embedding_loss_weight > 0


def horizon_band(horizon: int) -> int:
    """The band of a rollout horizon h >= 1: b with 2^b <= h < 2^(b+1)."""
    return max(int(horizon), 1).bit_length() - 1


AutoConfig.register(WorldModelConfig.model_type, WorldModelConfig)


# the largest value of each size key any real model has, with room to spare: beyond, config.json is damaged or hostile
# (a 10**12-wide layer would be allocated before any weight is read)
SIZE_LIMITS = {"hidden_size": 1 << 16, "intermediate_size": 1 << 19, "num_hidden_layers": 1024,
               "num_attention_heads": 1024, "num_key_value_heads": 1024, "head_dim": 1 << 13, "vocab_size": 1 << 23,
               "max_position_embeddings": 1 << 25}
MAX_EMBEDDING_DIM = 1 << 20
WORLD_MODEL_LIMITS = {"mixture_components": 1024, "diffusion_steps": 10_000, "ridge_history": 1024}


def check_config_dict(config: dict, source: str) -> None:
    """Refuse a `config.json` (a world model's, or a language model's) whose sizes are not positive integers within
    what real models use, or whose world-model keys hold values wmfactory does not know, before anything is built."""
    def refuse(key: str, value, accepted: str):
        raise DataError(f"'{source}': `{key}` is {json.dumps(value)[:60]} in config.json ({accepted}); the file is "
                        "damaged or was not written for this model.")

    def size(key: str, value, limit: int, optional: bool = False):
        if value is None and optional:
            return
        if type(value) is not int or not 1 <= value <= limit:
            refuse(key, value, f"a size must be an integer from 1 to {limit}")

    world = config.get("model_type") == WorldModelConfig.model_type
    texts = [config.get("text_config")] if world else [config, config.get("text_config")]  # and a VLM's text part
    for text in [t for t in texts if isinstance(t, dict)]:
        for key, limit in SIZE_LIMITS.items():
            if key in text:
                size(key, text[key], limit, optional=key in ("head_dim", "num_key_value_heads"))
    if not world:
        return
    if not isinstance(config.get("text_config"), dict) or not isinstance(config["text_config"].get("model_type"), str):
        refuse("text_config", config.get("text_config"), "the language model's configuration, with its model_type")
    size("embedding_dim", config.get("embedding_dim"), MAX_EMBEDDING_DIM)
    streams = config.get("streams")
    if streams is not None:
        if not isinstance(streams, dict) or not streams:
            refuse("streams", streams, "a mapping of stream names to dimensions")
        for name, dim in streams.items():
            size(f"streams.{name}", dim, MAX_EMBEDDING_DIM)
    for key, limit in WORLD_MODEL_LIMITS.items():
        if key in config:
            size(key, config[key], limit)
    from .heads import PREDICTION_HEADS
    from .loss import EMBEDDING_LOSSES

    hints = typing.get_type_hints(WorldModelArguments)
    registered = {"prediction_head_type": tuple(PREDICTION_HEADS), "world_model_loss_type": tuple(EMBEDDING_LOSSES)}
    for key in WORLD_MODEL_KEYS:  # heads and losses may be registered beside the built-in ones
        choices = typing.get_args(hints[key]) if typing.get_origin(hints[key]) is typing.Literal else ()
        choices = registered.get(key, choices)
        if key in config and choices and config[key] not in choices:
            refuse(key, config[key], f"one of {', '.join(sorted(choices))}")
    steps = config.get("missing_fill_steps", 0)
    if type(steps) is not int or not 0 <= steps <= MAX_FILL_STEPS:
        refuse("missing_fill_steps", steps, f"an integer from 0 to {MAX_FILL_STEPS}")
    for key in ("embedding_loss_weight", "lm_loss_weight", "sampling_temperature"):
        value = config.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            refuse(key, value, "a finite number >= 0")


def check_weights_hold(config: dict, folder: str) -> None:
    """A local folder's safetensors weights must hold at least the embedding table and one h x h matrix per layer
    that config.json claims: a config claiming far more than the file holds is refused before it is built."""
    import os

    from safetensors import safe_open

    text = config.get("text_config", config) if config.get("model_type") == WorldModelConfig.model_type else config
    names = [n for n in os.listdir(folder) if n.startswith("model") and n.endswith(".safetensors")]
    if not names or not isinstance(text, dict):
        return  # an adapter folder (its LM is elsewhere), or weights in another format
    hidden, layers, vocab = (text.get(k) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
    if not all(type(v) is int for v in (hidden, layers, vocab)):
        return
    held = 0
    for name in names:
        try:
            with safe_open(os.path.join(folder, name), framework="np") as weights:
                held += sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
        except Exception:  # a damaged file: reported by `damaged_weights` with its reason
            return
    claimed = vocab * hidden + layers * hidden * hidden
    if claimed > held:
        raise DataError(f"'{folder}': config.json claims at least {claimed:,} weights (vocab_size {vocab}, "
                        f"hidden_size {hidden}, {layers} layers) but the weights files hold {held:,}; config.json "
                        "does not describe these weights.")
