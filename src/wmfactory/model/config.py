"""`WorldModelConfig`: the configuration of a world model, saved as `config.json` beside its weights.

It nests the language model's own configuration (`text_config`, as LLaVA nests its text model's) and holds every
world-model key of `WorldModelArguments` under the same name and default, plus where the weights came from."""

import dataclasses
from typing import Any, Optional

from transformers import AutoConfig, PretrainedConfig

from .. import __version__
from ..data.streams import is_condition
from ..hparams.world_model_args import WorldModelArguments, parse_patterns

WORLD_MODEL_KEYS = tuple(f.name for f in dataclasses.fields(WorldModelArguments))


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
            setattr(self, key, kwargs.pop(key, getattr(defaults, key)))
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
        patterns = parse_patterns(arguments.condition_streams)
        kwargs.setdefault("ridge_conditions", arguments.predict_residual == "ridge"
                          and any(is_condition(name, patterns) for name in streams))
        return cls(text_config=text_config, streams=streams, **keys, **kwargs)

    def temperature_at(self, horizon: Optional[int] = None) -> float:
        """The calibrated sampling temperature at rollout `horizon` (1: the first generated group of the stream); a
        teacher-forced draw (None) takes `sampling_temperature`."""
        if horizon is None or not self.horizon_temperatures:
            return self.sampling_temperature
        return self.horizon_temperatures[min(horizon_band(horizon), len(self.horizon_temperatures) - 1)]

    @property
    def hidden_size(self) -> int:
        return self.text_config.get_text_config().hidden_size

    @property
    def stream_dims(self) -> dict[str, int]:
        """`{stream: dimension}`; a model of one stream takes the vectors of every key as that stream."""
        return self.streams or {"m": self.embedding_dim}

    @property
    def multi_stream(self) -> bool:
        """Several streams: one projector, head and statistics per stream (`projector.<stream>`, ...)."""
        return len(self.stream_dims) > 1

    @property
    def condition_patterns(self) -> tuple[str, ...]:
        return parse_patterns(self.condition_streams)

    def is_condition(self, stream: str) -> bool:
        return is_condition(stream, self.condition_patterns)

    @property
    def frame_conditions(self) -> list[tuple[str, int]]:
        """The condition streams `(name, dimension)` whose last `ridge_history` vectors the ridge frame reads besides
        the stream's own (in `stream_dims` order; empty unless `ridge_conditions`)."""
        if not self.ridge_conditions:
            return []
        return [(name, d) for name, d in self.stream_dims.items() if self.is_condition(name)]

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
