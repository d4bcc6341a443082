"""The world model: a causal LM with a projector (embedding_dim -> hidden) that writes vectors into the input
sequence, and a prediction head (hidden -> embedding_dim) that reads the next vector off the hidden states.

    vectors [v, d] --projector--> [v, h] --spliced into inputs_embeds [b, t, h]--> decoder --> hidden [b, t, h]
    hidden[p - 1] --prediction_head--> predicted vector at slot p          (target slots only)
    hidden[p - 1] --lm_head--> logits of the token at p                    (LM-labelled positions only)
"""

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.utils import ModelOutput

from .. import __version__
from ..extras.errors import DataError
from .loss import LossTerms, LossType, combine_losses, embedding_errors
from .statistics import EmbeddingStatistics

WORLD_MODEL_CONFIG = "world_model_config.json"
WORLD_MODEL_WEIGHTS = "world_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class WorldModelConfig:
    embedding_dim: int
    hidden_size: int
    projector_type: str = "mlp"
    prediction_head_type: str = "mlp"
    embedding_loss_weight: float = 1.0
    lm_loss_weight: float = 0.1
    world_model_loss_type: LossType = "l2"
    embedding_targets: str = "next"
    embedding_norm: str = "none"
    predict_residual: bool = True
    embedding_noise_std: float = 0.0
    scheduled_sampling_prob: float = 0.0
    ridge_history: int = 2
    base_model_name_or_path: Optional[str] = None
    finetuning_type: str = "full"
    template: Optional[str] = None
    wmfactory_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)


def build_mlp(kind: str, in_features: int, hidden: int, out_features: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, out_features))
    raise ValueError(f"Unknown module type '{kind}' (use mlp or linear).")


@dataclass
class WorldModelOutput(ModelOutput):
    loss: Optional[torch.Tensor] = None
    embedding_loss: Optional[torch.Tensor] = None
    lm_loss: Optional[torch.Tensor] = None
    terms: Optional[LossTerms] = None
    predicted_embeddings: Optional[torch.Tensor] = None  # [v_target, d], in the order of the target vectors


class WorldModel(nn.Module):
    """`language_model` is a `transformers` causal LM or a PEFT model wrapping one. The projector and head are
    kept in float32 whatever the LM's dtype, and cast at the boundaries."""

    main_input_name = "input_ids"
    accepts_loss_kwargs = False  # the trainer passes its own counts (see WorldModelTrainer)

    def __init__(self, language_model: nn.Module, config: WorldModelConfig):
        super().__init__()
        self.language_model = language_model
        self.wm_config = config
        h, d = config.hidden_size, config.embedding_dim
        self.projector = build_mlp(config.projector_type, d, h, h)
        self.prediction_head = build_mlp(config.prediction_head_type, h, h, d)
        self.statistics = EmbeddingStatistics(d, config.ridge_history)
        self.statistics.active = config.embedding_norm != "none"

    # ---- access to the wrapped LM ---------------------------------------------------------------------------------
    @property
    def causal_lm(self) -> nn.Module:
        """The transformers model (with LoRA layers injected in place when PEFT is used)."""
        model = self.language_model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    @property
    def config(self):
        return self.causal_lm.config

    @property
    def is_peft(self) -> bool:
        return hasattr(self.language_model, "peft_config")

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None, **kwargs) -> None:
        """Checkpoint the LLM's layers (the projector and head are small). Non-reentrant by default, so that
        gradients reach the projector through layers whose other inputs (frozen embeddings) need none."""
        checkpoint_kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        self.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_kwargs, **kwargs)
        self.causal_lm.config.use_cache = False

    def gradient_checkpointing_disable(self) -> None:
        self.causal_lm.gradient_checkpointing_disable()

    # ---- vectors in and out ---------------------------------------------------------------------------------
    def project(self, vectors: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Vectors `[v, d]` (data units, or already normalised) -> projector inputs to the LLM `[v, h]` float32."""
        z = vectors.float() if normalized else self.statistics.normalize(vectors)
        return self.projector(z.to(next(self.projector.parameters()).dtype))

    def vectors_from_hidden(
        self, hidden: torch.Tensor, previous: torch.Tensor, has_previous: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head on hidden states `[n, h]` -> (normalised `[n, d]`, data units `[n, d]`). With `predict_residual`
        the head gives the step from `previous` (data units `[n, d]`, where `has_previous` `[n]`) in units of the
        training steps' standard deviation, so that an output of zero is the persistence forecast."""
        out = self.prediction_head(hidden.to(next(self.prediction_head.parameters()).dtype)).float()
        if self.wm_config.predict_residual:
            base = self.statistics.normalize(previous) * has_previous[:, None].float()
            out = base + out * self.statistics.delta_scale
        return out, self.statistics.denormalize(out)

    # ---- forward ------------------------------------------------------------------------------------------------
    def embed(
        self,
        input_ids: torch.Tensor,
        embedding_vectors: torch.Tensor,
        embedding_positions: torch.Tensor,
        normalized: bool = False,
    ) -> torch.Tensor:
        """Token embeddings `[b, t, h]` with the projected vector written at each slot (row, position)."""
        inputs_embeds = self.causal_lm.get_input_embeddings()(input_ids)
        projected = self.project(embedding_vectors, normalized).to(inputs_embeds.dtype)  # [v, h]
        rows, positions = embedding_positions[:, 0], embedding_positions[:, 1]
        return inputs_embeds.index_put((rows, positions), projected)

    def hidden_states(self, inputs_embeds: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        decoder = self.causal_lm.get_decoder()
        return decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state

    @staticmethod
    def previous_vectors(vectors: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each vector of a batch `[v, d]` (row order), the vector before it in its row and whether there is
        one: (`[v, d]`, `[v]` bool)."""
        index = torch.arange(len(vectors), device=vectors.device)
        has_previous = (index > 0) & (positions[(index - 1).clamp_min(0), 0] == positions[:, 0])
        return vectors[(index - 1).clamp_min(0)], has_previous

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
        embedding loss is computed on normalised vectors; `predicted_embeddings` are in data units."""
        cfg = self.wm_config
        device = input_ids.device
        if embedding_vectors is None:
            embedding_vectors = torch.zeros((0, cfg.embedding_dim), device=device)
            embedding_positions = torch.zeros((0, 2), dtype=torch.long, device=device)
            embedding_is_target = torch.zeros((0,), dtype=torch.bool, device=device)
        z = self.statistics.normalize(embedding_vectors)  # [v, d]
        previous, has_previous = self.previous_vectors(embedding_vectors, embedding_positions)
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
        if cfg.embedding_loss_weight > 0:
            # run even with no targets: an empty pass keeps the head in the graph (DDP sees it used)
            slots = embedding_positions[targets]
            predicted_z, predicted = self.vectors_from_hidden(
                hidden[slots[:, 0], slots[:, 1] - 1], previous[targets], has_previous[targets]
            )
            embedding_sum = embedding_errors(predicted_z, z[targets], cfg.world_model_loss_type).sum()
            num_targets = int(slots.shape[0])

        lm_sum, num_tokens = zero, 0
        if cfg.lm_loss_weight > 0 and labels is not None:
            shifted = labels[:, 1:]
            mask = shifted != -100
            logits = self.lm_logits(hidden[:, :-1][mask])  # [n, vocab], labelled positions only
            lm_sum = nn.functional.cross_entropy(logits, shifted[mask], reduction="sum")
            num_tokens = int(mask.sum())

        terms = LossTerms(embedding_sum, num_targets, lm_sum, num_tokens)
        loss, embedding_loss, lm_loss = combine_losses(
            terms, cfg.embedding_loss_weight, cfg.lm_loss_weight, num_embedding_targets, num_lm_tokens
        )
        return WorldModelOutput(loss, embedding_loss, lm_loss, terms, predicted)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on hidden states `[n, h]` -> float32 logits `[n, vocab]`, with the post-processing some models
        apply in their own forward (Cohere's `logit_scale`, Gemma's `final_logit_softcapping`)."""
        logits = self.causal_lm.get_output_embeddings()(hidden).float()
        config = self.config.get_text_config()
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
        replace = torch.rand(len(own), device=own.device) < self.wm_config.scheduled_sampling_prob
        mixed = inputs.clone()
        mixed[targets] = torch.where(replace[:, None], own.to(mixed.dtype), inputs[targets])
        return mixed

    # ---- saving and loading ---------------------------------------------------------------------------------------
    def world_model_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything of the world model that is not the LM: projector, head and embedding statistics."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("language_model.")}

    def save_pretrained(
        self, save_directory: str, state_dict: Optional[dict] = None, is_main_process: bool = True, **kwargs
    ) -> None:
        """Writes the LM (adapter or full weights, by `save_pretrained`), `world_model.safetensors` (projector and
        head) and `world_model_config.json`: the folder alone reloads the whole world model."""
        if not is_main_process:
            return
        os.makedirs(save_directory, exist_ok=True)
        lm_state = None
        wm_state = self.world_model_state_dict()
        if state_dict is not None:
            prefix = "language_model."
            lm_state = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            wm_state = {k: v.contiguous() for k, v in state_dict.items() if not k.startswith(prefix)}
        self.language_model.save_pretrained(save_directory, state_dict=lm_state, **kwargs)
        save_file(wm_state, os.path.join(save_directory, WORLD_MODEL_WEIGHTS), metadata={"format": "pt"})
        with open(os.path.join(save_directory, WORLD_MODEL_CONFIG), "w", encoding="utf-8") as f:
            json.dump(asdict(self.wm_config), f, indent=2)

    def load_world_model_weights(self, directory: str) -> None:
        path = os.path.join(directory, WORLD_MODEL_WEIGHTS)
        if not os.path.isfile(path):
            raise DataError(
                f"'{path}' is missing: the projector and prediction head were not saved with this model, so it "
                "cannot be loaded as a world model."
            )
        state = load_file(path)
        expected = set(self.world_model_state_dict())
        if set(state) != expected:
            raise DataError(f"'{path}' holds {sorted(state)}, expected {sorted(expected)} (written by another "
                            "wmfactory version?).")
        self.load_state_dict(state, strict=False)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        base_model_name_or_path: Optional[str] = None,
        is_trainable: bool = False,
        dtype: Any = torch.float32,
        trust_remote_code: bool = False,
        device: Optional[str | torch.device] = None,
        **hub_kwargs,
    ) -> "WorldModel":
        """Load what training wrote to `path` (full weights, or base model + LoRA adapter; projector and head).
        `base_model_name_or_path` overrides the base model recorded at training time (for a LoRA folder). The
        tokenizer saved beside the weights is attached as `model.tokenizer`; `device` moves the model there."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config_path = os.path.join(path, WORLD_MODEL_CONFIG)
        if not os.path.isfile(config_path):
            raise DataError(f"'{config_path}' is missing: '{path}' is not a world model written by wmfactory.")
        with open(config_path, encoding="utf-8") as f:
            config = WorldModelConfig(**json.load(f))
        kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code, **hub_kwargs}
        if os.path.isfile(os.path.join(path, ADAPTER_CONFIG)):
            from peft import PeftModel

            base_path = base_model_name_or_path or config.base_model_name_or_path
            base = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
            language_model = PeftModel.from_pretrained(base, path, is_trainable=is_trainable)
        else:
            language_model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        model = cls(language_model, config)
        model.load_world_model_weights(path)
        model.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        if device is not None:
            model.to(device)
        if not is_trainable:
            model.eval()
            model.requires_grad_(False)
        return model

    # ---- inference on rows in the dataset format (see wmfactory.inference) ----------------------------------
    def rollout(self, row: dict, steps: int, dataset_dir: Optional[str] = None) -> np.ndarray:
        """Continue the latent stream after the end of `row` for `steps` vectors, feeding each prediction back
        through the projector (KV-cached). Returns `[steps, d]`."""
        from ..inference import continue_stream, encode_row

        return continue_stream(self, encode_row(self, row, dataset_dir), steps)

    def predict_next(self, row: dict, dataset_dir: Optional[str] = None) -> list:
        """Teacher-forced predictions for every target group of `row` (a list of `GroupPrediction`)."""
        from ..inference import encode_row, teacher_forced

        return teacher_forced(self, encode_row(self, row, dataset_dir))
