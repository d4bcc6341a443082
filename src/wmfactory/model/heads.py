"""Prediction heads: hidden states `[n, h]` -> a distribution over the next vector.

A head works in its own units u. A `Frame` maps them to the normalised units z in which vectors are compared:
z = shift + scale * u. Residual prediction and normalisation live outside the head, so that they wrap any head:
- without `predict_residual` the frame is the identity (shift 0, scale 1);
- with it, shift is the previous vector of the row and scale the standard deviation of the training steps, so that
  u = 0 is the persistence forecast;
- `embedding_norm` maps data units to z before the head sees a target, and the model maps means and samples back.

A head has four parts:
- `forward(hidden)` -> `params`: whatever parameterises its distribution (a deterministic head: its output `[n, d]`);
- `loss(params, target, frame)` -> `[n]`: the training loss of each target vector `[n, d]` (z units);
- `mean(params, frame)` -> `[n, d]`: the mean of the distribution (z units);
- `sample(params, frame, num_samples, temperature, generator)` -> `[S, n, d]`: draws from it (z units).
A new head is a subclass of `PredictionHead` registered with `@register_head("name")` (see docs/extending.md)."""

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from .loss import embedding_errors


@dataclass
class Frame:
    """z = shift + scale * u, per vector. `shift`: `[n, d]` (or a broadcastable 0); `scale`: `[d]` (or 1)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def to_normalized(self, u: torch.Tensor) -> torch.Tensor:
        return self.shift + u * self.scale

    def to_head(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.shift) / self.scale


def previous_vectors(vectors: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each vector of a batch `[v, d]` (row order; `positions` `[v, 2]` = (row, position)), the vector before it
    in its row and whether there is one: (`[v, d]`, `[v]` bool). The one definition of "the previous vector"."""
    index = torch.arange(len(vectors), device=vectors.device)
    has_previous = (index > 0) & (positions[(index - 1).clamp_min(0), 0] == positions[:, 0])
    return vectors[(index - 1).clamp_min(0)], has_previous


class PredictionHead(nn.Module):
    """The interface every head implements (shapes in the module docstring)."""

    def forward(self, hidden: torch.Tensor) -> Any:
        raise NotImplementedError

    def loss(self, params: Any, target: torch.Tensor, frame: Frame) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: Any, frame: Frame) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: Any, frame: Frame, num_samples: int = 1, temperature: float = 1.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        raise NotImplementedError


class DeterministicHead(PredictionHead):
    """One vector per hidden state: the loss is the `world_model_loss_type` error of that vector, the mean is the
    vector, and every sample is the mean."""

    def __init__(self, net: nn.Module, loss_type: str):
        super().__init__()
        self.net = net
        self.loss_type = loss_type

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden).float()  # [n, d]

    def loss(self, params: torch.Tensor, target: torch.Tensor, frame: Frame) -> torch.Tensor:
        return embedding_errors(frame.to_normalized(params), target, self.loss_type)

    def mean(self, params: torch.Tensor, frame: Frame) -> torch.Tensor:
        return frame.to_normalized(params)

    def sample(self, params, frame, num_samples=1, temperature=1.0, generator=None) -> torch.Tensor:
        mean = self.mean(params, frame)
        return mean.expand(num_samples, *mean.shape)


def build_mlp(kind: str, in_features: int, hidden: int, out_features: int) -> nn.Module:
    """`linear`: one Linear; `mlp`: Linear-GELU-Linear (the projector's and the deterministic heads' shapes)."""
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, out_features))
    raise ValueError(f"Unknown module type '{kind}' (use mlp or linear).")


HeadBuilder = Callable[[Any], PredictionHead]  # WorldModelConfig -> head
PREDICTION_HEADS: dict[str, HeadBuilder] = {}


def register_head(name: str):
    def decorator(builder: HeadBuilder) -> HeadBuilder:
        PREDICTION_HEADS[name] = builder
        return builder

    return decorator


@register_head("mlp")
def mlp_head(config) -> PredictionHead:
    h = config.hidden_size
    return DeterministicHead(build_mlp("mlp", h, h, config.embedding_dim), config.world_model_loss_type)


@register_head("linear")
def linear_head(config) -> PredictionHead:
    return DeterministicHead(build_mlp("linear", config.hidden_size, 0, config.embedding_dim),
                             config.world_model_loss_type)


def build_head(config) -> PredictionHead:
    kind = config.prediction_head_type
    if kind not in PREDICTION_HEADS:
        raise ValueError(f"Unknown prediction_head_type '{kind}' (registered: {', '.join(PREDICTION_HEADS)}).")
    return PREDICTION_HEADS[kind](config)
