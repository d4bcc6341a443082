"""The world-model loss (README, "Targets and losses"), in one place.

loss = embedding_loss_weight * embedding_loss + lm_loss_weight * lm_loss, where embedding_loss is the mean over
target vectors of the per-vector error (`world_model_loss_type`, one of `EMBEDDING_LOSSES`) and lm_loss the mean
token cross-entropy. Both means divide by a count that the trainer may widen to the whole optimizer step (all
micro-batches of a gradient-accumulation window, all ranks), so that the gradient does not depend on how a batch is
split. No targets -> 0, never NaN."""

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..extras.registry import registrar

# per-vector error `[v]` between predicted and target vectors `[v, d]`
EmbeddingLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EMBEDDING_LOSSES: dict[str, EmbeddingLoss] = {}
register_loss = registrar(EMBEDDING_LOSSES)


@register_loss("l2")
def mean_squared_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (predicted - target).pow(2).mean(dim=-1)


@register_loss("l1")
def mean_absolute_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (predicted - target).abs().mean(dim=-1)


@register_loss("smooth_l1")
def huber_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber with beta 1: squared below 1, absolute above."""
    difference = predicted - target
    absolute = difference.abs()
    return torch.where(absolute < 1, 0.5 * difference.pow(2), absolute - 0.5).mean(dim=-1)


@register_loss("cosine")
def cosine_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1 - torch.nn.functional.cosine_similarity(predicted, target, dim=-1, eps=1e-8)


def embedding_errors(predicted: torch.Tensor, target: torch.Tensor, loss_type: str,
                     observed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-vector error `[v]` between `predicted` and `target`, both `[v, d]`. `observed` `[v, d]` bool
    (`missing_values: mask`): the error of the observed entries only. Both vectors are set to 0 at the missing
    entries, so that they add nothing; a loss that is a mean over the dimensions is then rescaled to a mean over the
    observed ones, the cosine loss is the cosine of the observed parts, and a vector with nothing observed costs 0."""
    if loss_type not in EMBEDDING_LOSSES:
        raise ValueError(f"Unknown world_model_loss_type '{loss_type}' (registered: {', '.join(EMBEDDING_LOSSES)}).")
    if observed is None:
        return EMBEDDING_LOSSES[loss_type](predicted, target)
    errors = EMBEDDING_LOSSES[loss_type](torch.where(observed, predicted, 0.0), torch.where(observed, target, 0.0))
    count = observed.sum(dim=-1)
    if loss_type != "cosine":
        errors = errors * observed.shape[-1] / count.clamp_min(1)
    return errors * (count > 0)


@dataclass
class LossTerms:
    """Summed errors of one micro-batch and the counts they are averaged over (0-d tensors in the forward pass, so
    that nothing waits for the device)."""

    embedding_sum: torch.Tensor
    num_targets: int | torch.Tensor
    lm_sum: torch.Tensor
    num_tokens: int | torch.Tensor


def combine_losses(
    terms: LossTerms,
    embedding_loss_weight: float,
    lm_loss_weight: float,
    num_targets: Optional[int | torch.Tensor] = None,
    num_tokens: Optional[int | torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (loss, embedding_loss, lm_loss). `num_targets`/`num_tokens` override the micro-batch's own counts."""
    targets = terms.num_targets if num_targets is None else num_targets
    tokens = terms.num_tokens if num_tokens is None else num_tokens
    embedding_loss = terms.embedding_sum / _at_least_one(targets)
    lm_loss = terms.lm_sum / _at_least_one(tokens)
    loss = embedding_loss_weight * embedding_loss + lm_loss_weight * lm_loss
    return loss, embedding_loss, lm_loss


def _at_least_one(count: int | float | torch.Tensor) -> float | torch.Tensor:
    """The count, or 1 when it is 0 (a batch without targets contributes 0, not NaN); tensors stay on device."""
    return count.clamp(min=1).to(torch.float32) if isinstance(count, torch.Tensor) else float(max(count, 1))
