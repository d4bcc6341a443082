"""`WorldModelConfig`: the configuration of a world model, saved as `config.json` beside its weights.

It nests the language model's own configuration (`text_config`, as LLaVA nests its text model's) and holds every
world-model key of `WorldModelArguments` under the same name and default, plus where the weights came from."""

import dataclasses
from typing import Any, Optional

from transformers import AutoConfig, PretrainedConfig

from .. import __version__
from ..hparams.world_model_args import WorldModelArguments

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
        **kwargs,
    ):
        defaults = WorldModelArguments()
        for key in WORLD_MODEL_KEYS:
            setattr(self, key, kwargs.pop(key, getattr(defaults, key)))
        self.base_model_name_or_path = base_model_name_or_path  # the LLM a LoRA adapter applies to
        self.finetuning_type = finetuning_type
        self.template = template
        self.wmfactory_version = wmfactory_version
        kwargs.setdefault("tie_word_embeddings", False)  # the language model ties its own weights
        super().__init__(**kwargs)
        # set after the base class, whose attention-implementation setter would otherwise reset the LM's own
        if isinstance(text_config, dict):
            text_config = dict(text_config)
            text_config = AutoConfig.for_model(text_config.pop("model_type"), **text_config)
        self.text_config = text_config

    @classmethod
    def from_arguments(cls, arguments: WorldModelArguments, text_config, embedding_dim: int, **kwargs):
        """The configuration of a new world model: the keys of `arguments`, `embedding_dim` as found in the data."""
        keys = dataclasses.asdict(arguments)
        keys["embedding_dim"] = embedding_dim
        return cls(text_config=text_config, **keys, **kwargs)

    @property
    def hidden_size(self) -> int:
        return self.text_config.get_text_config().hidden_size

    @property
    def predicts_embeddings(self) -> bool:
        """Whether the prediction head is run and trained: `stage: wm`. Under `stage: sft` the embedding loss weight
        is 0, the vectors are inputs only."""
        return self.embedding_loss_weight > 0


AutoConfig.register(WorldModelConfig.model_type, WorldModelConfig)
