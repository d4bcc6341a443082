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
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput

from ..data.collator import lm_label_index as lm_label_positions
from ..data.collator import lm_label_mask
from ..data.streams import check_stream_names
from ..extras.compat import (
    base_model_kwargs,
    forget_key_mapping,
    lm_head_logits,
    quiet_gradient_checkpointing_warning,
)
from ..extras.errors import ConfigError, DataError
from . import tables
from .config import WorldModelConfig, check_config_dict, check_weights_hold
from .files import damaged_weights
from .heads import (
    Frame,
    build_head,
    build_mlp,
    condition_history,
    fill_missing_history,
    history_vectors,
    local_step,
    previous_vectors,
    within_streams,
)
from .loss import LossTerms, combine_losses
from .statistics import EmbeddingStatistics

Row = Union[dict[str, Any], tuple[str, int]]  # a row in the dataset format, or (dataset name, row index)
WORLD_MODEL_PARTS = ("projector", "prediction_head", "statistics")  # everything that is not the LM
MISSING_FILL_LR = 0.2  # Adam's first step on the missing entries (`fill_gaps`), normalised units, decayed to 0
MISSING_FILL_HISTORY = 8  # the vectors a persistence fill looks back through for an entry's last observed value


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
        h, dims = config.hidden_size, config.stream_dims
        width = 2 if config.missing_values == "mask" else 1  # the projector reads [z * observed, observed]
        check_stream_names(dims)
        # one projector, statistics and (unless a condition) head per stream, keyed by its name (one entry for a
        # model of one stream)
        self.projector = nn.ModuleDict({s: build_mlp(config.projector_type, width * d, h, h) for s, d in dims.items()})
        self.prediction_head = nn.ModuleDict({s: build_head(config, dims[s]) for s in config.predicted_streams})
        short = config.ridge_frame
        width = sum(d for _, d in config.frame_conditions)  # the conditions the frame's ridge reads
        self.statistics = nn.ModuleDict({
            s: EmbeddingStatistics(d, config.ridge_history, short, 0 if config.is_condition(s) else width,
                                   frame_form=config.frame_form if config.ridge_frame and not config.is_condition(s)
                                   else "levels")
            for s, d in dims.items()})
        for statistics in self.statistics.values():
            statistics.active = config.embedding_norm != "none"
        if config.unroll_steps > 1 and not self.can_unroll:
            raise ConfigError(f"`unroll_steps` feeds the head's mean back with its gradient; the "
                              f"`{config.prediction_head_type}` head's mean is a Monte-Carlo average: use "
                              "`scheduled_sampling_prob` with it instead.")
        self.post_init()
        if config.ridge_frame:  # training starts at the ridge forecast
            for name in config.predicted_streams:
                self.stream_part("prediction_head", name).start_at_frame()

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

    # ---- streams ---------------------------------------------------------------------------------------------------
    def stream_part(self, kind: str, stream: Optional[str] = None) -> nn.Module:
        """The `projector`, `prediction_head` or `statistics` of the model's stream that takes the vectors of
        `stream` (`config.model_stream`: a model of one stream takes every stream, and None, as its own)."""
        stream = self.config.model_stream(stream)
        if kind == "prediction_head" and self.config.is_condition(stream):
            raise DataError(f"stream '{stream}' is a condition stream: the model does not predict it.")
        return getattr(getattr(self, kind), stream)  # through PEFT's modules_to_save wrapper too

    @property
    def can_unroll(self) -> bool:
        """Whether `unroll_steps` > 1 can train the model: every predicted stream's head has a cheap, differentiable
        mean to feed back (`PredictionHead.mean_is_cheap`; not `diffusion`'s Monte-Carlo average)."""
        return all(self.stream_part("prediction_head", name).mean_is_cheap for name in self.config.predicted_streams)

    def part_names(self) -> list[str]:
        """The modules that are not the LM, one per stream, by name (`projector.s`, `projector.a`, ...: PEFT's
        `modules_to_save` wraps modules, not dicts of them)."""
        return [f"{part}.{name}" for part in WORLD_MODEL_PARTS for name in getattr(self, part).keys()]

    def stream_names(self, names) -> torch.Tensor:
        """Stream names (of a row's vectors) -> the indices of the model's streams that take them
        (`config.model_stream`) in `config.stream_dims` `[v]`."""
        order = {name: i for i, name in enumerate(self.config.stream_dims)}
        index = {name: order[self.config.model_stream(name)] for name in set(names)}
        return torch.tensor([index[name] for name in names], dtype=torch.long)

    def _split_by(self, streams: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The stream indices `[v]` that the pass splits the vectors by: None for a model of one stream, whose
        vectors are all of it (`streams` is not read, and may be None): no host sync and no shape that depends on
        the data, so that `torch.compile` traces the pass whole."""
        return None if self.config.sole_stream is not None else streams

    def _by_stream(self, streams: Optional[torch.Tensor], predicted_only: bool = False):
        """(name, dimension, indices `[n]` of the vectors of that stream, `slice(None)` for all of them) per
        stream."""
        dims = self.config.stream_dims
        streams = self._split_by(streams)
        if streams is None:
            split = [(name, d, slice(None)) for name, d in dims.items()]
        else:
            cached = self.__dict__.get("_stream_indices")
            if cached is None or cached[0] is not streams:  # one split per batch, reused by every step of a forward
                cached = (streams, [(name, d, (streams == i).nonzero().squeeze(1))
                                    for i, (name, d) in enumerate(dims.items())])
                self.__dict__["_stream_indices"] = cached
            split = cached[1]
        return [part for part in split if not (predicted_only and self.config.is_condition(part[0]))]

    def normalize_streams(self, vectors: torch.Tensor, streams: Optional[torch.Tensor]) -> torch.Tensor:
        """`[v, W]` data units (zero-padded to the widest stream) -> normalised, float32, padding kept at 0."""
        z = vectors.float().clone()
        for name, d, index in self._by_stream(streams):
            z[index, :d] = self.stream_part("statistics", name).normalize(vectors[index, :d])
        return z

    def denormalize_streams(self, z: torch.Tensor, streams: Optional[torch.Tensor]) -> torch.Tensor:
        """`normalize_streams` undone: `[v, W]` normalised -> data units, float32, padding kept at 0."""
        vectors = z.float().clone()
        for name, d, index in self._by_stream(streams):
            vectors[index, :d] = self.stream_part("statistics", name).denormalize(z[index, :d].float())
        return vectors

    def frame_inputs(self, vectors: torch.Tensor, positions: torch.Tensor,
                     streams: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """What `head_frame` needs for each vector `[v, W]`: the previous vector of its stream in its row `[v, W]`
        and whether there is one `[v]`; with `predict_residual: ridge`, the last `ridge_history` vectors of its
        stream `[v, k, W]` (most recent first) and how many there are `[v]`. When the frame reads conditions
        (`config.frame_conditions`), the last k vectors of each condition stream before the vector follow in the
        last columns: `[v, k, W + sum d_c]`."""
        streams = self._split_by(streams)
        if not self.config.ridge_frame:
            return within_streams(previous_vectors, vectors, positions, streams)
        k = self.config.ridge_history
        history, count = within_streams(lambda v, p: history_vectors(v, p, k), vectors, positions, streams)
        if not self.config.frame_conditions:
            return history, count
        order = list(self.config.stream_dims)
        parts = [condition_history(vectors[:, :d], positions, streams == order.index(name), k)
                 for name, d in self.config.frame_conditions]
        return torch.cat([history.float()] + parts, dim=-1), count  # the conditions in the last columns

    # ---- vectors in and out of one stream -------------------------------------------------------------------------
    def project(self, vectors: torch.Tensor, normalized: bool = False, stream: Optional[str] = None,
                fill: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Vectors `[v, d]` of `stream` (data units, or already normalised) -> projector inputs to the LLM `[v, h]`.
        With `missing_values: mask` the projector reads `[v, 2d]`: z with its missing (NaN) entries replaced by
        `fill` `[v, d]` (normalised: `missing_fill`; 0, the training mean, without it), then the indicator of the
        observed entries (1 observed, 0 missing)."""
        z = vectors.float() if normalized else self.stream_part("statistics", stream).normalize(vectors)
        if self.config.missing_values == "mask":
            observed = ~torch.isnan(z)
            z = torch.cat([torch.where(observed, z, 0.0 if fill is None else fill.float()), observed.float()], dim=-1)
        return self.stream_part("projector", stream)(z)

    def missing_fill(self, vectors: torch.Tensor, rows: torch.Tensor, normalized: bool = False,
                     stream: Optional[str] = None) -> Optional[torch.Tensor]:
        """`missing_values: mask`: what each vector `[v, d]` of `stream` (in row order; `rows` `[v, 2]`, column 0 the
        row) enters with at its missing entries, normalised `[v, d]`: the frame's fill of them from the vectors
        before it in its row and stream (`fill_missing_history` on its window, itself and the `ridge_history` - 1
        vectors before it; so, with the ridge frame, the entry that the ridges' forecasts from the older vectors
        and its observed entries make most likely). The same numbers as the frame's window of the vector after it.
        Without a ridge frame, or for a stream the model does not predict, the last observed value (persistence),
        or the training mean where there is none. None without missing entries."""
        if self.config.missing_values != "mask" or not bool(torch.isnan(vectors).any()):
            return None
        statistics = self.stream_part("statistics", stream)
        data = statistics.denormalize(vectors.float()) if normalized else vectors.float()
        ridge = self.config.ridge_frame and not self.config.is_condition(self.config.model_stream(stream))
        k = max(self.config.ridge_history, 2) if ridge else MISSING_FILL_HISTORY
        history, count = history_vectors(data, rows, k - 1)
        window = torch.cat([data[:, None], history], dim=1)  # [v, k, d], the vector itself first
        filled = fill_missing_history(window, count + 1, statistics.mean, statistics.ridge_on if ridge else None,
                                      statistics.std if ridge else None)
        return statistics.normalize(filled[:, 0])

    @torch.no_grad()
    def fill_gaps(self, input_ids: torch.Tensor, vectors: torch.Tensor, positions: torch.Tensor,
                  fillable: torch.Tensor, streams: Optional[torch.Tensor] = None, rows: Optional[torch.Tensor] = None,
                  attention_mask: Optional[torch.Tensor] = None, position_ids: Optional[torch.Tensor] = None,
                  steps: Optional[int] = None) -> Optional[torch.Tensor]:
        """`missing_values: mask`: the vectors `[v, W]` (data units, a batch as `forward` reads it) with their missing
        entries filled by what the model finds most likely: starting from the frame's linear fill (`missing_fill`),
        `steps` (default `config.missing_fill_steps`) Adam steps on the missing entries alone (normalised units,
        from `MISSING_FILL_LR` down to 0 along a cosine) lower the model's own teacher-forced loss of the `fillable`
        `[v]` target vectors, every entry of them counted, the gaps as filled. So a gap is solved from the vectors
        after it too, through the model's dynamics, not the ridges' linear ones. The model's weights get no
        gradient. The vectors returned hold no NaN where they were solved, so a filled entry then enters as observed
        (indicator 1: it rolled out twice as well as an indicator 0, docs/benchmarks.md). Inference only (the
        engine's `fill_row_gaps`): a teacher-forced score would read its targets through the fill. None when nothing
        is missing, nothing is fillable or `steps` is 0."""
        steps = self.config.missing_fill_steps if steps is None else steps
        if self.config.missing_values != "mask" or steps <= 0 or not bool(torch.isnan(vectors).any()):
            return None
        gaps = torch.isnan(vectors)
        rows = frame_rows(positions, rows)
        z = self.normalize_streams(vectors, streams)
        heads = []
        for name, d, index in self._by_stream(streams, predicted_only=True):
            chosen = torch.arange(len(vectors), device=vectors.device)[index]
            chosen = chosen[fillable[chosen]]
            if len(chosen):
                heads.append((name, d, chosen))
        if not heads:
            return None
        for name, d, index in self._by_stream(streams):  # the start: the frame's linear fill
            fill = self.missing_fill(z[index, :d], rows[index], True, name)
            if fill is not None:
                z[index, :d] = torch.where(gaps[index, :d], fill, z[index, :d])
        where = gaps.nonzero(as_tuple=True)
        values = z[where].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([values], lr=MISSING_FILL_LR)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(steps):
            with torch.enable_grad():
                filled = z.index_put(where, values)
                data = self.denormalize_streams(filled, streams)
                previous, has_previous = self.frame_inputs(data, rows, streams)
                embeds = self.embed(input_ids, filled, positions, True, streams, rows)
                hidden = self.hidden_states(embeds, attention_mask, position_ids)
                loss = 0.0
                for name, d, chosen in heads:
                    head, params, frame = self._head_on(name, d, chosen, hidden, positions, previous, has_previous)
                    loss = loss + head.loss(params, filled[chosen, :d], frame).sum()
                values.grad, = torch.autograd.grad(loss, values)
            optimizer.step()
            schedule.step()
        filled = self.denormalize_streams(z.index_put(where, values.detach()), streams)
        return torch.where(gaps, filled, vectors.float())  # the observed entries exactly as given

    def head_frame(self, previous: torch.Tensor, has_previous: torch.Tensor, stream: Optional[str] = None) -> Frame:
        """The frame of the head's output for vectors whose previous vectors (of the same stream) are `previous`
        `[n, d]` (data units, where `has_previous` `[n]`): residual prediction starts from the previous vector, in
        steps of the training steps' standard deviation; without it the frame is the identity. With
        `predict_residual: ridge`, `previous` is the last k vectors `[n, k, d]` (most recent first) and
        `has_previous` their count `[n]`: a vector starts from the forecast of the ridge on its last j <= k vectors
        (j: as many as precede it, each ridge fitted on the training split), in steps of the same size; one with
        none before it from the center. With condition streams the ridge also reads the last j vectors of each
        (`frame_inputs` puts them in the last columns of `previous`), so that the frame knows the actions."""
        statistics = self.stream_part("statistics", stream)
        if not self.config.predict_residual:
            one = statistics.delta_scale.new_ones(())
            return Frame(shift=one * 0, scale=one)
        d, c = statistics.mean.shape[0], statistics.condition_width
        conditions = previous[..., previous.shape[-1] - c:] if c else None  # [n, k, c]: the last columns
        previous = previous[..., :d]
        if self.config.missing_values == "mask":  # missing entries of the frame's inputs (`fill_missing_history`)
            if previous.dim() == 2:
                previous = torch.where(torch.isnan(previous), statistics.mean.to(previous.dtype), previous)
            else:
                ridges = statistics.ridge_on if self.config.ridge_frame else None
                previous = fill_missing_history(previous, has_previous, statistics.mean, ridges,
                                                statistics.std)
            conditions = None if conditions is None else torch.nan_to_num(conditions)
        if previous.dim() == 2:
            shift = statistics.normalize(previous) * has_previous[:, None].float()
            return Frame(shift=shift, scale=statistics.delta_scale)
        n, k, d = previous.shape
        # each vector from the ridge on as many vectors as precede it (up to k), so that every vector with a
        # history has the same kind of frame: mixing a persistence frame for the first ones with the ridge frame
        # for the others stopped the head from learning either (docs/quality.md)
        forecast = previous.new_zeros((n, d), dtype=torch.float32)
        ones = previous.new_ones((n, 1), dtype=torch.float32)
        for j in range(1, k + 1):
            parts = [previous[:, :j].float().reshape(n, j * d)]
            if conditions is not None:
                parts.append(conditions[:, :j].float().reshape(n, j * c))
            features = torch.cat(parts + [ones], dim=1)
            forecast = torch.where((has_previous.clamp(max=k) == j)[:, None],
                                   features @ statistics.frame_ridge_on(j).float(), forecast)
        known = (has_previous > 0)[:, None]
        center = torch.zeros_like(forecast)  # no vector before it: the training center, as without ridge
        shift = torch.where(known, statistics.normalize(forecast), center)
        if self.config.frame_step == "local":
            return Frame(shift=shift, scale=local_step(statistics.normalize(previous), has_previous,
                                                       statistics.delta_scale))
        # in steps of the training steps' standard deviation, the unit of the persistence frame
        return Frame(shift=shift, scale=statistics.delta_scale)

    def vectors_from_hidden(
        self, hidden: torch.Tensor, previous: torch.Tensor, has_previous: torch.Tensor, stream: Optional[str] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's mean on hidden states `[n, h]` -> (normalised `[n, d]`, data units `[n, d]`)."""
        frame = self.head_frame(previous, has_previous, stream)
        head = self.stream_part("prediction_head", stream)
        mean = head.mean(head(hidden.float()), frame)
        return mean, self.stream_part("statistics", stream).denormalize(mean)

    def sample_vectors(
        self, hidden: torch.Tensor, previous: torch.Tensor, has_previous: torch.Tensor, num_samples: int,
        temperature: Optional[float] = None, generator: Optional[torch.Generator] = None,
        stream: Optional[str] = None, horizon: Optional[int] = None,
    ) -> torch.Tensor:
        """Draws from the head's distribution on hidden states `[n, h]` -> `[num_samples, n, d]`, data units. A
        deterministic head gives its mean in every draw. `temperature` defaults to the calibrated one at rollout
        `horizon` (`config.temperature_at`: `sampling_temperature` for a teacher-forced draw)."""
        if temperature is None:
            temperature = self.config.temperature_at(horizon)
        frame = self.head_frame(previous, has_previous, stream)
        head = self.stream_part("prediction_head", stream)
        draws = head.sample(head(hidden.float()), frame, num_samples, temperature, generator)
        return self.stream_part("statistics", stream).denormalize(draws)

    # ---- forward ------------------------------------------------------------------------------------------------
    def embed(
        self,
        input_ids: torch.Tensor,
        embedding_vectors: torch.Tensor,
        embedding_positions: torch.Tensor,
        normalized: bool = False,
        embedding_streams: Optional[torch.Tensor] = None,
        rows: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Token embeddings `[b, t, h]` with the projected vector written at each slot (row, position); each vector
        `[v, W]` goes through the projector of its stream (`embedding_streams` `[v]`). With `missing_values: mask`
        a missing entry enters as the frame's fill of it from the vectors before it (`missing_fill`; `rows` `[v, 2]`:
        each vector's own row, `frame_rows`, when rows are packed)."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        projected = inputs_embeds.new_zeros((len(embedding_vectors), inputs_embeds.shape[-1]))  # [v, h]
        rows = embedding_positions if rows is None else rows
        for name, d, index in self._by_stream(embedding_streams):
            vectors = embedding_vectors[index, :d]
            fill = self.missing_fill(vectors, rows[index], normalized, name)
            projected[index] = self.project(vectors, normalized, name, fill).to(inputs_embeds.dtype)
        return inputs_embeds.index_put((embedding_positions[:, 0], embedding_positions[:, 1]), projected)

    def hidden_states(self, inputs_embeds: torch.Tensor, attention_mask: Optional[torch.Tensor],
                      position_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The decoder's last hidden states `[b, t, h]`. Packed rows come with `position_ids` restarting at each row
        and no `attention_mask`: transformers then keeps each row's attention inside the row."""
        extra = {} if position_ids is None else {"position_ids": position_ids}
        return self.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False,
                                  **extra).last_hidden_state

    def _target_heads(self, streams: Optional[torch.Tensor], targets: torch.Tensor,
                      target_index: Optional[torch.Tensor] = None):
        """Per predicted stream: (name, dimension, which vectors are its targets: indices `[n]`, and where they go
        among all targets: indices `[n]`, or `slice(None)` when they are all the targets). `target_index`
        `[v_target]`: the targets' indices when known (the collator's), else computed from the mask `targets`
        `[v]`."""
        rank = targets.long().cumsum(0) - 1  # the place of each target among the targets
        out = []
        for name, d, index in self._by_stream(streams, predicted_only=True):
            if isinstance(index, slice):  # every vector is of this stream: so is every target
                chosen = targets.nonzero().squeeze(1) if target_index is None else target_index
                out.append((name, d, chosen, index))
            else:
                chosen = index[targets[index]]
                out.append((name, d, chosen, rank[chosen]))
        return out

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        embedding_vectors: Optional[torch.Tensor] = None,
        embedding_positions: Optional[torch.Tensor] = None,
        embedding_is_target: Optional[torch.Tensor] = None,
        embedding_streams: Optional[torch.Tensor] = None,
        embedding_target_index: Optional[torch.Tensor] = None,
        lm_label_index: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        embedding_rows: Optional[torch.Tensor] = None,
        embedding_fed: Optional[torch.Tensor] = None,
        num_embedding_targets: Optional[int | torch.Tensor] = None,
        num_lm_tokens: Optional[int | torch.Tensor] = None,
    ) -> WorldModelOutput:
        """Shapes: input_ids/attention_mask/labels `[b, t]`; embedding_vectors `[v, W]` (zero-padded to the widest
        stream); embedding_positions `[v, 2]`; embedding_is_target `[v]`; embedding_streams `[v]` (index into
        `config.stream_dims`; absent with one stream); embedding_target_index `[v_target]` and lm_label_index `[n]`
        (the collator's: the targets among the vectors, and the flat positions `[b * t]` of the hidden states with
        an LM target; computed here when absent). `num_*` widen the loss normalisation beyond this micro-batch. The
        embedding loss is each head's loss on normalised vectors of its stream; `predicted_embeddings` are means in
        data units `[v_target, W]`.

        Packed rows (`packing`): `position_ids` `[b, t]` restart at each row, there is no attention mask, and
        `embedding_rows` `[v]` says which row each vector belongs to (for the previous vectors of its row).

        `embedding_fed` `[v, W]` (`missing_values: mask`, `missing_refills`): the vectors as they enter the model,
        their gaps filled by the model itself (`fill_row_gaps`); the loss still reads `embedding_vectors`, so a
        missing entry stays out of it.

        With one stream the pass gathers with these indices and keeps its counts as tensors: no host sync and no
        shape that depends on the data, so `torch.compile` traces it whole (tests/model/test_compile.py)."""
        cfg = self.config
        device = input_ids.device
        if embedding_vectors is None:
            embedding_vectors = torch.zeros((0, cfg.embedding_dim), device=device)
            embedding_positions = torch.zeros((0, 2), dtype=torch.long, device=device)
            embedding_is_target = torch.zeros((0,), dtype=torch.bool, device=device)
            embedding_target_index = torch.zeros((0,), dtype=torch.long, device=device)
        if embedding_target_index is None:
            embedding_target_index = embedding_is_target.nonzero().squeeze(1)
        streams = embedding_streams
        z = self.normalize_streams(embedding_vectors, streams)  # [v, W]: what the loss reads
        fed = embedding_vectors if embedding_fed is None else embedding_fed  # what the model reads
        rows = frame_rows(embedding_positions, embedding_rows)
        previous, has_previous = self.frame_inputs(fed, rows, streams)
        targets = embedding_is_target
        inputs = z if embedding_fed is None else self.normalize_streams(fed, streams)
        if self.training and cfg.embedding_noise_std > 0:
            inputs = inputs + cfg.embedding_noise_std * torch.randn_like(inputs)
        target_index = embedding_target_index
        if self.training and cfg.scheduled_sampling_prob > 0 and len(target_index) > 0:
            inputs = self._scheduled_sampling(input_ids, attention_mask, inputs, embedding_positions, previous,
                                              has_previous, targets, target_index, streams, position_ids, rows)
        hidden = self.hidden_states(self.embed(input_ids, inputs, embedding_positions, True, streams, rows),
                                    attention_mask, position_ids)  # [b, t, h]

        zero = hidden.new_zeros((), dtype=torch.float32)
        predicted = hidden.new_zeros((0, cfg.embedding_dim), dtype=torch.float32)
        embedding_sum, num_targets = zero, zero.long()
        if cfg.predicts_embeddings:
            num_targets = targets.sum()
            # run even with no targets: an empty pass keeps the head in the graph (DDP sees it used)
            means = []
            heads = self._target_heads(streams, targets, target_index)
            for name, d, chosen, _ in heads:
                head, params, frame = self._head_on(name, d, chosen, hidden, embedding_positions, previous,
                                                    has_previous)
                target = z[chosen][:, :d]
                embedding_sum = embedding_sum + self._head_loss(head, params, target, frame).sum()
                if not self.training or head.mean_is_cheap:
                    means.append(self.stream_part("statistics", name).denormalize(head.mean(params, frame)))
            if means:
                predicted = self._in_target_order(means, heads, len(target_index))
            if self.training and cfg.unroll_steps > 1:  # the embedding loss: the mean of the k passes' (equal weights)
                fed_back = self._fed_back(predicted, input_ids, attention_mask, fed, z, embedding_positions,
                                          targets, target_index, streams, rows, position_ids, cfg.unroll_steps - 1)
                embedding_sum = (embedding_sum + sum(fed_back)) / cfg.unroll_steps

        lm_sum, num_tokens = zero, zero.long()
        if cfg.lm_loss_weight > 0 and labels is not None:
            if lm_label_index is None:
                lm_label_index = lm_label_positions(labels)
            # [n, vocab], labelled positions only; the target of flat position i is the label at i + 1
            logits = self.lm_logits(hidden.flatten(0, 1)[lm_label_index])
            lm_sum = nn.functional.cross_entropy(logits, labels.flatten()[lm_label_index + 1], reduction="sum")
            num_tokens = lm_label_mask(labels).sum()

        terms = LossTerms(embedding_sum, num_targets, lm_sum, num_tokens)
        loss, embedding_loss, lm_loss = combine_losses(
            terms, cfg.embedding_loss_weight, cfg.lm_loss_weight, num_embedding_targets, num_lm_tokens
        )
        return WorldModelOutput(loss, embedding_loss, lm_loss, terms, predicted)

    def _head_on(self, name: str, d: int, chosen: torch.Tensor, hidden: torch.Tensor, positions: torch.Tensor,
                 previous: torch.Tensor, has_previous: torch.Tensor):
        """Stream `name`'s head on its target vectors `chosen` (indices into the batch's vectors): (head, params,
        frame), from the hidden state one position before each slot."""
        head = self.stream_part("prediction_head", name)
        slots = positions[chosen]
        frame = self.head_frame(previous[chosen], has_previous[chosen], name)
        return head, head(hidden[slots[:, 0], slots[:, 1] - 1].float()), frame

    def _fed_back(self, predicted: torch.Tensor, input_ids, attention_mask, vectors, truth, positions, targets,
                  target_index, streams, rows, position_ids, passes: int):
        """`passes` more passes, each feeding at every target slot the previous pass's prediction (data units, with
        its gradient in training) instead of the true vector (`vectors`, data units, as the first pass read them),
        so that pass j forecasts from j - 1 steps of the model's own outputs, as in a rollout (`unroll_steps`).
        Yields each pass's embedding loss sum against the true vectors (`truth`, normalised)."""
        own = predicted
        for number in range(passes):
            fed = vectors.float().index_copy(0, target_index, own)
            previous, has_previous = self.frame_inputs(fed, rows, streams)
            hidden = self.hidden_states(self.embed(input_ids, self.normalize_streams(fed, streams), positions, True,
                                                   streams, rows), attention_mask, position_ids)
            total, means = 0.0, []
            heads = self._target_heads(streams, targets, target_index)
            for name, d, chosen, _ in heads:
                head, params, frame = self._head_on(name, d, chosen, hidden, positions, previous, has_previous)
                target = truth[chosen][:, :d]
                total = total + self._head_loss(head, params, target, frame).sum()
                if number < passes - 1:  # the last pass's forecasts feed nothing
                    means.append(self.stream_part("statistics", name).denormalize(head.mean(params, frame)))
            if means:
                own = self._in_target_order(means, heads, len(own))
            yield total

    def _head_loss(self, head, params, target: torch.Tensor, frame: Frame) -> torch.Tensor:
        """The head's loss `[n]` on targets `[n, d]`; with `missing_values: mask`, on their observed (not NaN)
        entries only (a head registered without the `observed` argument is then called with it and must take it)."""
        if self.config.missing_values != "mask":
            return head.loss(params, target, frame)
        return head.loss(params, target, frame, ~torch.isnan(target))

    def _in_target_order(self, parts: list[torch.Tensor], heads: list, count: int) -> torch.Tensor:
        """Per-stream results `[n_s, d_s]` (in the order of `heads`, `_target_heads`) -> `[count, W]` in the order
        of the targets."""
        out = parts[0].new_zeros((count, self.config.embedding_dim))
        for part, (_, d, _, place) in zip(parts, heads):
            out[place, :d] = part
        return out

    @torch.no_grad()
    def target_distributions(
        self,
        input_ids: torch.Tensor,
        embedding_vectors: torch.Tensor,
        embedding_positions: torch.Tensor,
        embedding_is_target: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        embedding_streams: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        embedding_rows: Optional[torch.Tensor] = None,
        **losses_only,
    ) -> list[tuple[str, Any, Frame, torch.Tensor]]:
        """Per predicted stream, the head's distribution over each target vector of a collated batch (packed or not,
        as `forward` reads it), from the true vectors before it (no training noise): (stream, `params`, `frame`,
        the targets `[n, d]` normalised). `losses_only`: the batch's keys that only the losses read (labels,
        counts)."""
        streams = embedding_streams
        z = self.normalize_streams(embedding_vectors, streams)
        rows = frame_rows(embedding_positions, embedding_rows)
        previous, has_previous = self.frame_inputs(embedding_vectors, rows, streams)
        hidden = self.hidden_states(self.embed(input_ids, z, embedding_positions, True, streams, rows),
                                    attention_mask, position_ids)
        out = []
        for name, d, chosen, _ in self._target_heads(streams, embedding_is_target):
            _, params, frame = self._head_on(name, d, chosen, hidden, embedding_positions, previous, has_previous)
            out.append((name, params, frame, z[chosen][:, :d]))
        return out

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on hidden states `[n, h]` -> float32 logits `[n, vocab]`, as the language model's own forward
        computes them (its output head and whatever its class applies after it: `extras.compat.lm_head_logits`)."""
        return lm_head_logits(self.language_model, hidden).float()

    def _scheduled_sampling(self, input_ids, attention_mask, inputs, positions, previous, has_previous, targets,
                            target_index, streams=None, position_ids=None, rows=None):
        """With probability `scheduled_sampling_prob`, the input of a target vector becomes the model's own
        prediction of it from a first pass without gradient (as it will be in a rollout)."""
        with torch.no_grad():
            hidden = self.hidden_states(self.embed(input_ids, inputs, positions, True, streams, rows),
                                        attention_mask, position_ids)
            own = []
            heads = self._target_heads(streams, targets, target_index)
            for name, d, chosen, _ in heads:
                head, params, frame = self._head_on(name, d, chosen, hidden, positions, previous, has_previous)
                own.append(head.mean(params, frame))
            own = self._in_target_order(own, heads, len(target_index))
        replace = torch.rand(len(own), device=own.device) < self.config.scheduled_sampling_prob
        mixed = torch.where(replace[:, None], own.to(inputs.dtype), inputs[target_index])
        return inputs.index_copy(0, target_index, mixed)

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
                renaming = legacy.one_stream_renaming(config, legacy.weight_keys(path))  # an older one-stream folder
                model = super().from_pretrained(path, *model_args, config=config, key_mapping=renaming, **kwargs)
                if renaming:  # saved in the current layout
                    forget_key_mapping(model, renaming)
            else:
                # AutoModel's own keys for a plain adapter folder do not apply to the base model
                kwargs = base_model_kwargs(kwargs)
                base = AutoModelForCausalLM.from_pretrained(
                    base_model_name_or_path or config.base_model_name_or_path, **kwargs)
                model = legacy.load_adapter(cls(config, base), path, is_trainable, **hub)
                if not is_trainable:
                    model = model.merge_and_unload()
        model.tokenizer = AutoTokenizer.from_pretrained(path, **hub)
        if device is not None:
            model.to(device)
        if not is_trainable:
            model.eval()
            model.requires_grad_(False)
        return model

    # ---- inference on rows in the dataset format (the inference engine: `wmfactory.inference`) -----------------
    def rollout(self, row: Row | list[Row], steps: int, dataset_dir: Optional[str] = None,
                context_groups: Optional[int] = None, num_samples: Optional[int] = None,
                temperature: Optional[float] = None, seed: Optional[int] = None,
                conditions: Optional[dict[str, Any]] = None, pattern: Optional[list[str]] = None,
                from_last_vector: bool = False,
                context_length: Optional[int] = None) -> np.ndarray | dict[str, np.ndarray] | list:
        """Continue the latent stream after the end of `row` for `steps` vectors (from at most its last
        `context_length` groups); see `wmfactory.inference.row_api.rollout`."""
        from ..inference.row_api import rollout

        return rollout(self, row, steps, dataset_dir, context_groups, num_samples, temperature, seed, conditions,
                       pattern, from_last_vector, context_length)

    def predict_df(self, df, future_df=None, **options):
        """Forecasts of every series of the long table `df` as a long table with quantiles (`model/tables.py`)."""
        return tables.predict_df(self, df, future_df, **options)

    def predict_next(self, row: Row, dataset_dir: Optional[str] = None, num_samples: Optional[int] = None,
                     temperature: Optional[float] = None, seed: Optional[int] = None,
                     context_length: Optional[int] = None) -> list:
        """Teacher-forced predictions for every target group of `row` (of at most its last `context_length` groups);
        see `wmfactory.inference.row_api`."""
        from ..inference.row_api import predict_next

        return predict_next(self, row, dataset_dir, num_samples, temperature, seed, context_length)

    def plan(self, row: Row, horizon: int, **options):
        """Choose a sequence of actions (a condition stream) by model-predictive control; see
        `wmfactory.inference.planning.plan` for the options."""
        from ..inference.planning import plan

        return plan(self, row, horizon, **options)

    @staticmethod
    def nearest(vectors, bank, k: int = 5) -> list[list[dict[str, Any]]] | tuple[np.ndarray, np.ndarray]:
        """Decoding by retrieval: the k items of `bank` most cosine-similar to each predicted vector `[q, d]`; see
        `wmfactory.inference.row_api.nearest`."""
        from ..inference.row_api import nearest

        return nearest(vectors, bank, k)

    def encode_row(self, row: Row, dataset_dir: Optional[str] = None) -> dict[str, Any]:
        """A row (a dict in the dataset format, or `(dataset_name, row_index)`) -> the features training sees, with
        this model's tokenizer, template and target rule."""
        from ..data.rows import encode_row

        cfg = self.config
        return encode_row(row, self.tokenizer, cfg.template, cfg.embedding_targets, cfg.row_dims, dataset_dir,
                          cfg.condition_patterns, cfg.missing_values)


AutoModel.register(WorldModelConfig, WorldModel)


def frame_rows(embedding_positions: torch.Tensor, embedding_rows: Optional[torch.Tensor]) -> torch.Tensor:
    """(row, position) of each vector `[v, 2]`: the row whose previous vectors it reads; with packed rows the packed
    row (`embedding_rows`), not the shared sequence it sits in."""
    if embedding_rows is None:
        return embedding_positions
    return torch.stack([embedding_rows, embedding_positions[:, 1]], dim=1)


@contextlib.contextmanager
def quiet_loading():
    """Loading without noise that says nothing to a wmfactory user: the "Loading weights" bar of a local model
    (downloads keep their own bars), and the FutureWarning transformers 5 gives when PEFT reads
    `model.is_gradient_checkpointing`."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with quiet_gradient_checkpointing_warning():
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
    check_config_dict(config_dict, path)  # before anything is built from it
    if os.path.isdir(path):
        check_weights_hold(config_dict, path)
    return WorldModelConfig.from_dict(config_dict)


def _adapter_config_file(path: str, hub: dict) -> Optional[str]:
    from transformers.utils import find_adapter_config_file

    return find_adapter_config_file(path, **{k: v for k, v in hub.items() if k != "trust_remote_code"})
