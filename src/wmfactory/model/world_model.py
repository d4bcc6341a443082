"""The world model: a causal LM with a projector (embedding_dim -> hidden) that writes vectors into the input
sequence, and a prediction head (hidden -> a distribution over the next vector) that reads the next vector off the
hidden states. A Hugging Face `PreTrainedModel` composed the way LLaVA composes its text model: `WorldModelConfig`
nests the LM's config, and `save_pretrained` / `from_pretrained` / gradient checkpointing / `push_to_hub` are the
library's own.

    vectors [v, d] --normalise--> z --projector--> [v, h] --spliced into inputs_embeds [b, t, h]--> decoder --> hidden
    hidden[p - 1] --prediction_head--> distribution over z at slot p (in the frame of residual prediction)
    hidden[p - 1] --lm_head--> logits of the token at p                    (LM-labelled positions only)
"""

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput

from ..extras.errors import DataError
from .config import WorldModelConfig
from .files import damaged_weights
from .generation import Sampling, context_features, continue_stream, teacher_forced
from .heads import Frame, build_head, build_mlp, previous_vectors
from .loss import LossTerms, combine_losses, lm_label_mask
from .statistics import EmbeddingStatistics

Row = Union[dict[str, Any], tuple[str, int]]  # a row in the dataset format, or (dataset name, row index)
WORLD_MODEL_PARTS = ("projector", "prediction_head", "statistics")  # everything that is not the LM


@dataclass
class WorldModelOutput(ModelOutput):
    loss: Optional[torch.Tensor] = None
    embedding_loss: Optional[torch.Tensor] = None
    lm_loss: Optional[torch.Tensor] = None
    terms: Optional[LossTerms] = None
    predicted_embeddings: Optional[torch.Tensor] = None  # [v_target, d] means, in the order of the target vectors


class WorldModel(PreTrainedModel):
    """`language_model` is a `transformers` causal LM (with LoRA layers injected in place when PEFT wraps the world
    model). The projector, head and statistics stay float32 whatever the
    LM's dtype (`_keep_in_fp32_modules`), and are cast at the boundaries. LoRA wraps the whole world model in a PEFT
    model whose `modules_to_save` are the projector, head and statistics (see `model/adapter.py`)."""

    config_class = WorldModelConfig
    main_input_name = "input_ids"
    # forward takes the counts of the whole optimizer step (`num_embedding_targets`, `num_lm_tokens`, which the
    # trainer's `get_batch_samples` gathers) and normalises by them: the Trainer must not divide the loss again
    accepts_loss_kwargs = True
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _keep_in_fp32_modules = list(WORLD_MODEL_PARTS)

    def __init__(self, config: WorldModelConfig, language_model: Optional[nn.Module] = None):
        super().__init__(config)
        if language_model is None:
            language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.language_model = language_model
        h, d = config.hidden_size, config.embedding_dim
        self.projector = build_mlp(config.projector_type, d, h, h)
        self.prediction_head = build_head(config)
        self.statistics = EmbeddingStatistics(d, config.ridge_history)
        self.statistics.active = config.embedding_norm != "none"
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The LM initialises itself; the projector and head keep PyTorch's default initialisation."""
        if hasattr(module, "reset_parameters") and module is not self:
            module.reset_parameters()

    # ---- access to the wrapped LM ---------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    # ---- vectors in and out ---------------------------------------------------------------------------------
    def project(self, vectors: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Vectors `[v, d]` (data units, or already normalised) -> projector inputs to the LLM `[v, h]` float32."""
        z = vectors.float() if normalized else self.statistics.normalize(vectors)
        return self.projector(z)

    def head_frame(self, previous: torch.Tensor, has_previous: torch.Tensor) -> Frame:
        """The frame of the head's output for vectors whose previous vectors are `previous` `[n, d]` (data units,
        where `has_previous` `[n]`): residual prediction starts from the previous vector, in steps of the training
        steps' standard deviation; without it the frame is the identity."""
        if not self.config.predict_residual:
            one = self.statistics.delta_scale.new_ones(())
            return Frame(shift=one * 0, scale=one)
        shift = self.statistics.normalize(previous) * has_previous[:, None].float()
        return Frame(shift=shift, scale=self.statistics.delta_scale)

    def vectors_from_hidden(
        self, hidden: torch.Tensor, previous: torch.Tensor, has_previous: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's mean on hidden states `[n, h]` -> (normalised `[n, d]`, data units `[n, d]`)."""
        frame = self.head_frame(previous, has_previous)
        mean = self.prediction_head.mean(self.prediction_head(hidden.float()), frame)
        return mean, self.statistics.denormalize(mean)

    def sample_vectors(
        self, hidden: torch.Tensor, previous: torch.Tensor, has_previous: torch.Tensor, num_samples: int,
        temperature: Optional[float] = None, generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Draws from the head's distribution on hidden states `[n, h]` -> `[num_samples, n, d]`, data units. A
        deterministic head gives its mean in every draw. `temperature` defaults to the config's
        `sampling_temperature` (calibrated after training)."""
        if temperature is None:
            temperature = self.config.sampling_temperature
        frame = self.head_frame(previous, has_previous)
        params = self.prediction_head(hidden.float())
        return self.statistics.denormalize(self.prediction_head.sample(params, frame, num_samples, temperature,
                                                                       generator))

    # ---- forward ------------------------------------------------------------------------------------------------
    def embed(
        self,
        input_ids: torch.Tensor,
        embedding_vectors: torch.Tensor,
        embedding_positions: torch.Tensor,
        normalized: bool = False,
    ) -> torch.Tensor:
        """Token embeddings `[b, t, h]` with the projected vector written at each slot (row, position)."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        projected = self.project(embedding_vectors, normalized).to(inputs_embeds.dtype)  # [v, h]
        rows, positions = embedding_positions[:, 0], embedding_positions[:, 1]
        return inputs_embeds.index_put((rows, positions), projected)

    def hidden_states(self, inputs_embeds: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        return self.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  use_cache=False).last_hidden_state

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        embedding_vectors: Optional[torch.Tensor] = None,
        embedding_positions: Optional[torch.Tensor] = None,
        embedding_is_target: Optional[torch.Tensor] = None,
        num_embedding_targets: Optional[int | torch.Tensor] = None,
        num_lm_tokens: Optional[int | torch.Tensor] = None,
    ) -> WorldModelOutput:
        """Shapes: input_ids/attention_mask/labels `[b, t]`; embedding_vectors `[v, d]`; embedding_positions
        `[v, 2]`; embedding_is_target `[v]`. `num_*` widen the loss normalisation beyond this micro-batch. The
        embedding loss is the head's loss on normalised vectors; `predicted_embeddings` are means in data units."""
        cfg = self.config
        device = input_ids.device
        if embedding_vectors is None:
            embedding_vectors = torch.zeros((0, cfg.embedding_dim), device=device)
            embedding_positions = torch.zeros((0, 2), dtype=torch.long, device=device)
            embedding_is_target = torch.zeros((0,), dtype=torch.bool, device=device)
        z = self.statistics.normalize(embedding_vectors)  # [v, d]
        previous, has_previous = previous_vectors(embedding_vectors, embedding_positions)
        targets = embedding_is_target
        inputs = z
        if self.training and cfg.embedding_noise_std > 0:
            inputs = inputs + cfg.embedding_noise_std * torch.randn_like(inputs)
        if self.training and cfg.scheduled_sampling_prob > 0 and targets.any():
            inputs = self._scheduled_sampling(input_ids, attention_mask, inputs, embedding_positions, previous,
                                              has_previous, targets)
        hidden = self.hidden_states(self.embed(input_ids, inputs, embedding_positions, normalized=True),
                                    attention_mask)  # [b, t, h]

        zero = hidden.new_zeros((), dtype=torch.float32)
        predicted = hidden.new_zeros((0, cfg.embedding_dim), dtype=torch.float32)
        embedding_sum, num_targets = zero, 0
        if cfg.predicts_embeddings:
            # run even with no targets: an empty pass keeps the head in the graph (DDP sees it used)
            slots = embedding_positions[targets]
            frame = self.head_frame(previous[targets], has_previous[targets])
            params = self.prediction_head(hidden[slots[:, 0], slots[:, 1] - 1].float())
            embedding_sum = self.prediction_head.loss(params, z[targets], frame).sum()
            if not self.training or self.prediction_head.mean_is_cheap:
                predicted = self.statistics.denormalize(self.prediction_head.mean(params, frame))
            num_targets = int(slots.shape[0])

        lm_sum, num_tokens = zero, 0
        if cfg.lm_loss_weight > 0 and labels is not None:
            mask = lm_label_mask(labels)
            logits = self.lm_logits(hidden[:, :-1][mask])  # [n, vocab], labelled positions only
            lm_sum = nn.functional.cross_entropy(logits, labels[:, 1:][mask], reduction="sum")
            num_tokens = int(mask.sum())

        terms = LossTerms(embedding_sum, num_targets, lm_sum, num_tokens)
        loss, embedding_loss, lm_loss = combine_losses(
            terms, cfg.embedding_loss_weight, cfg.lm_loss_weight, num_embedding_targets, num_lm_tokens
        )
        return WorldModelOutput(loss, embedding_loss, lm_loss, terms, predicted)

    @torch.no_grad()
    def target_distributions(
        self,
        input_ids: torch.Tensor,
        embedding_vectors: torch.Tensor,
        embedding_positions: torch.Tensor,
        embedding_is_target: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        **unused,
    ) -> tuple[Any, Frame, torch.Tensor]:
        """The head's distribution over each target vector of a collated batch, from the true vectors before it (no
        training noise): (`params`, `frame`, the targets `[n, d]` in normalised units)."""
        z = self.statistics.normalize(embedding_vectors)
        previous, has_previous = previous_vectors(embedding_vectors, embedding_positions)
        hidden = self.hidden_states(self.embed(input_ids, z, embedding_positions, normalized=True), attention_mask)
        targets = embedding_is_target
        slots = embedding_positions[targets]
        frame = self.head_frame(previous[targets], has_previous[targets])
        return self.prediction_head(hidden[slots[:, 0], slots[:, 1] - 1].float()), frame, z[targets]

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on hidden states `[n, h]` -> float32 logits `[n, vocab]`, with the post-processing some models
        apply in their own forward (Cohere's `logit_scale`, Gemma's `final_logit_softcapping`)."""
        logits = self.language_model.get_output_embeddings()(hidden).float()
        config = self.language_model.config.get_text_config()
        if getattr(config, "logit_scale", None):
            logits = logits * config.logit_scale
        cap = getattr(config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _scheduled_sampling(self, input_ids, attention_mask, inputs, positions, previous, has_previous, targets):
        """With probability `scheduled_sampling_prob`, the input of a target vector becomes the model's own
        prediction of it from a first pass without gradient (as it will be in a rollout)."""
        with torch.no_grad():
            hidden = self.hidden_states(self.embed(input_ids, inputs, positions, normalized=True), attention_mask)
            slots = positions[targets]
            own, _ = self.vectors_from_hidden(hidden[slots[:, 0], slots[:, 1] - 1], previous[targets],
                                              has_previous[targets])
        replace = torch.rand(len(own), device=own.device) < self.config.scheduled_sampling_prob
        mixed = inputs.clone()
        mixed[targets] = torch.where(replace[:, None], own.to(mixed.dtype), inputs[targets])
        return mixed

    # ---- loading --------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        base_model_name_or_path: Optional[str] = None,
        is_trainable: bool = False,
        device: Optional[str | torch.device] = None,
        **kwargs,
    ):
        """Load what training wrote to a folder (or a hub repository): the whole world model (`model.safetensors`),
        or a LoRA adapter with the projector, head and statistics (`adapter_model.safetensors`) on the base model
        that `config.json` names (`base_model_name_or_path` overrides it). An adapter is merged into the base
        weights unless `is_trainable`, which returns the PEFT model. Folders written by wmfactory 0.1
        (`world_model_config.json`) are converted on load. The tokenizer saved beside the weights is attached as
        `model.tokenizer`; `device` moves the model there."""
        path = str(pretrained_model_name_or_path)
        with quiet_loading():
            try:
                return cls._load(path, model_args, base_model_name_or_path, is_trainable, device, kwargs)
            except DataError:
                raise
            except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # a damaged or half-written folder
                detail = " ".join(str(err).split()) or type(err).__name__
                raise DataError(f"'{path}' cannot be loaded as a world model: {detail[:500]}") from None

    @classmethod
    def _load(cls, path, model_args, base_model_name_or_path, is_trainable, device, kwargs):
        from . import legacy

        kwargs.setdefault("dtype", torch.float32)
        hub = {key: kwargs[key] for key in ("cache_dir", "revision", "token", "trust_remote_code") if key in kwargs}
        if os.path.isdir(path) and (damage := damaged_weights(path)):
            raise DataError(f"'{path}': {damage}")
        if legacy.is_legacy_folder(path):
            model = legacy.load_legacy_world_model(cls, path, base_model_name_or_path, **kwargs)
        else:
            config = kwargs.pop("config", None) or _world_model_config(path, hub)  # AutoModel passes it
            adapter = _adapter_config_file(path, hub)
            if adapter is None:
                model = super().from_pretrained(path, *model_args, config=config, **kwargs)
            else:
                from peft import PeftModel

                # AutoModel's own keys for a plain adapter folder do not apply to the base model
                kwargs = {k: v for k, v in kwargs.items() if k != "adapter_kwargs" and not k.startswith("_")}
                base = AutoModelForCausalLM.from_pretrained(
                    base_model_name_or_path or config.base_model_name_or_path, **kwargs)
                model = PeftModel.from_pretrained(cls(config, base), path, is_trainable=is_trainable, **hub)
                if not is_trainable:
                    model = model.merge_and_unload()
        model.tokenizer = AutoTokenizer.from_pretrained(path, **hub)
        if device is not None:
            model.to(device)
        if not is_trainable:
            model.eval()
            model.requires_grad_(False)
        return model

    # ---- inference on rows in the dataset format ----------------------------------
    def rollout(self, row: Row, steps: int, dataset_dir: Optional[str] = None, context_groups: Optional[int] = None,
                num_samples: Optional[int] = None, temperature: Optional[float] = None,
                seed: Optional[int] = None) -> np.ndarray:
        """Continue the latent stream after the end of `row` (or after its first `context_groups` groups) for
        `steps` vectors, feeding each prediction back through the projector (KV-cached). Returns `[steps, d]`, the
        head's mean at each step; with `num_samples` S, `[S, steps, d]`: S trajectories, each feeding back its own
        draws from the head's distribution (`temperature` scales the spread, default the calibrated
        `config.sampling_temperature`; `seed` makes them reproducible),
        computed as one batch. `row`: a dict in the dataset format, or `(dataset_name, row_index)`."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise DataError(f"`steps` must be a positive integer, got {steps!r}.")
        sampling = _sampling(num_samples, temperature, seed)
        features = self.encode_row(row, dataset_dir)
        if context_groups is not None:
            features = context_features(features, context_groups)
        if not features["embedding_groups"]:
            raise DataError("the row holds no embedding vector (before `context_groups`): there is no stream to "
                            "continue.")
        limit = getattr(self.config.text_config.get_text_config(), "max_position_embeddings", None)
        if limit and len(features["input_ids"]) + steps > limit:
            raise DataError(f"a rollout of {steps} vectors after this row ({len(features['input_ids'])} positions) "
                            f"needs {len(features['input_ids']) + steps} positions; the model has {limit}.")
        return continue_stream(self, features, steps, sampling)

    def predict_next(self, row: Row, dataset_dir: Optional[str] = None, num_samples: Optional[int] = None,
                     temperature: Optional[float] = None, seed: Optional[int] = None) -> list:
        """Teacher-forced predictions for every target group of `row` (a list of `GroupPrediction`: `predicted`
        `[n, d]`, the head's mean; with `num_samples`, `samples` `[S, n, d]` too)."""
        return teacher_forced(self, self.encode_row(row, dataset_dir), _sampling(num_samples, temperature, seed))

    def encode_row(self, row: Row, dataset_dir: Optional[str] = None) -> dict[str, Any]:
        """A row (a dict in the dataset format, or `(dataset_name, row_index)`) -> the features training sees, with
        this model's tokenizer, template and target rule."""
        from ..data.rows import encode_row

        cfg = self.config
        return encode_row(row, self.tokenizer, cfg.template, cfg.embedding_targets, cfg.embedding_dim, dataset_dir)


AutoModel.register(WorldModelConfig, WorldModel)


def _sampling(num_samples: Optional[int], temperature: Optional[float], seed: Optional[int]) -> Optional[Sampling]:
    if num_samples is None:
        return None
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise DataError(f"`num_samples` must be a positive integer, got {num_samples!r}.")
    if temperature is not None and not temperature > 0:
        raise DataError(f"`temperature` must be positive, got {temperature!r}.")
    return Sampling(num_samples, temperature, seed)


@contextlib.contextmanager
def quiet_loading():
    """Loading without noise that says nothing to a wmfactory user: the "Loading weights" bar of a local model
    (downloads keep their own bars), and the FutureWarning transformers 5 gives when PEFT reads
    `model.is_gradient_checkpointing`."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _world_model_config(path: str, hub: dict) -> WorldModelConfig:
    missing = DataError(f"'{path}' holds no config.json: point at the output_dir of a wmfactory training run.")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise missing
    try:
        config_dict, _ = WorldModelConfig.get_config_dict(path, **hub)
    except OSError as err:
        if os.path.isfile(os.path.join(path, "config.json")):
            raise DataError(f"'{os.path.join(path, 'config.json')}' is not valid JSON: "
                            f"{' '.join(str(err).split())[:300]}") from None
        raise missing from None
    if config_dict.get("model_type") != WorldModelConfig.model_type:
        raise DataError(f"'{path}' is not a world model written by wmfactory (its config.json describes a "
                        f"'{config_dict.get('model_type')}' model): point at the output_dir of a training run.")
    return WorldModelConfig.from_dict(config_dict)


def _adapter_config_file(path: str, hub: dict) -> Optional[str]:
    from transformers.utils import find_adapter_config_file

    return find_adapter_config_file(path, **{k: v for k, v in hub.items() if k != "trust_remote_code"})
