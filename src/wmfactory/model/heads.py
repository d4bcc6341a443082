"""Prediction heads: hidden states `[n, h]` -> a distribution over the next vector.

A head works in its own units u. A `Frame` maps them to the normalised units z in which vectors are compared:
z = shift + scale * u. Residual prediction and normalisation live outside the head, so that they wrap any head:
- without `predict_residual` the frame is the identity (shift 0, scale 1);
- with it, shift is the previous vector of the row and scale the standard deviation of the training steps, so that
  u = 0 is the persistence forecast;
- with `predict_residual: ridge` (the default), shift is the forecast of the ridge fitted on the training split on
  the last vectors of the stream (and of each condition stream), in steps of the same scale, so that u = 0 is the
  ridge forecast (`WorldModel.head_frame`);
- `embedding_norm` maps data units to z before the head sees a target, and the model maps means and samples back.

A head has four parts:
- `forward(hidden)` -> `params`: whatever parameterises its distribution (a deterministic head: its output `[n, d]`);
- `loss(params, target, frame, observed=None)` -> `[n]`: the training loss of each target vector `[n, d]` (z units);
  `observed` `[n, d]` bool (`missing_values: mask`): only those entries count (a missing one is NaN in `target`);
- `mean(params, frame)` -> `[n, d]`: the mean of the distribution (z units);
- `sample(params, frame, num_samples, temperature, generator)` -> `[S, n, d]`: draws from it (z units).
A new head is a subclass of `PredictionHead` registered with `@register_head("name")` (see docs/extending.md)."""

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..extras.registry import registrar
from .loss import embedding_errors


@dataclass
class Frame:
    """z = shift + scale * u, per vector. `shift`: `[n, d]` (or a broadcastable 0); `scale`: `[d]` (or 1; `[n, d]`
    with `frame_step: local`)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def to_normalized(self, u: torch.Tensor) -> torch.Tensor:
        return self.shift + u * self.scale

    def to_head(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.shift) / self.scale


LOCAL_STEP_FLOOR = 1e-8  # normalised units: a still history's unit, so that the head's output cannot move it


def local_step(history: torch.Tensor, count: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """`frame_step: local`: the unit of the head's step for vectors whose last k vectors are `history` `[n, k, d]`
    (normalised, most recent first; `count` `[n]` of them real): per dimension, the mean absolute step between
    consecutive ones, at least `LOCAL_STEP_FLOOR`; `fallback` `[d]` (the training steps' standard deviation) where
    fewer than two precede the vector."""
    n, k, d = history.shape
    if k < 2:
        return fallback.float().expand(n, d)
    steps = (history[:, :-1] - history[:, 1:]).abs().float()  # [n, k - 1, d]
    real = (torch.arange(k - 1, device=history.device)[None, :] < (count[:, None] - 1)).float()[..., None]
    mean = (steps * real).sum(1) / real.sum(1).clamp_min(1)
    return torch.where((count >= 2)[:, None], mean.clamp_min(LOCAL_STEP_FLOOR), fallback.float())


def previous_vectors(vectors: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each vector of a batch `[v, d]` (row order; `positions` `[v, 2]` = (row, position)), the vector before it
    in its row and whether there is one: (`[v, d]`, `[v]` bool). The one definition of "the previous vector"."""
    index = torch.arange(len(vectors), device=vectors.device)
    has_previous = (index > 0) & (positions[(index - 1).clamp_min(0), 0] == positions[:, 0])
    return vectors[(index - 1).clamp_min(0)], has_previous


def history_vectors(vectors: torch.Tensor, positions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each vector of a batch `[v, d]` (row order; `positions` `[v, 2]` = (row, position)), the k vectors before
    it in its row, most recent first, and how many there are: (`[v, k, d]`, zeros where there is none; `[v]`)."""
    index = torch.arange(len(vectors), device=vectors.device)
    valid = torch.ones(len(vectors), dtype=torch.bool, device=vectors.device)
    count = torch.zeros(len(vectors), dtype=torch.long, device=vectors.device)
    history = []
    for back in range(1, k + 1):
        source = (index - back).clamp_min(0)
        valid = valid & (index - back >= 0) & (positions[source, 0] == positions[:, 0])
        history.append(vectors[source] * valid[:, None].to(vectors.dtype))
        count = count + valid.long()
    return torch.stack(history, dim=1), count


def condition_history(vectors: torch.Tensor, positions: torch.Tensor, is_condition: torch.Tensor,
                      k: int) -> torch.Tensor:
    """For each vector of a batch (row order; `positions` `[v, 2]` = (row, position)), the last k vectors of one
    condition stream before it in its row, most recent first, zeros where there are fewer: `[v, k, d_c]`.
    `vectors` `[v, d_c]` (the batch's vectors cut to the stream's width), `is_condition` `[v]` marks the stream's."""
    index = is_condition.nonzero().squeeze(1)
    out = vectors.new_zeros((len(vectors), k, vectors.shape[1]), dtype=torch.float32)
    if len(index) == 0:
        return out
    before = torch.cumsum(is_condition.long(), 0) - is_condition.long()  # the stream's vectors strictly before
    for back in range(1, k + 1):
        number = before - back
        source = index[number.clamp_min(0)]
        valid = (number >= 0) & (positions[source, 0] == positions[:, 0])
        out[:, back - 1] = vectors[source].float() * valid[:, None]
    return out


FILL_LIMIT = 256  # windows of more numbers (k * d) than this are filled forward


def fill_missing_history(history: torch.Tensor, count: torch.Tensor, fallback: torch.Tensor,
                         ridge_on: Optional[Callable[[int], torch.Tensor]] = None,
                         scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`missing_values: mask`: the last k vectors before each vector `[n, k, d]` (most recent first, `count` `[n]` of
    them real, data units) with each missing (NaN) entry filled. With ridges (`ridge_on(j)`: weights `[j*d + 1, d]`
    on the last j vectors) and `scale` `[d]` (the training standard deviation), the missing entries of a window are
    solved together by least squares: every vector of the window with older vectors in it is compared with the
    forecast of each ridge on them (j = 1 .. as many as there are), each dimension's error divided by its `scale`,
    so a gap is filled from the vectors before it and after it; a faint pull (1e-3) to `fallback` `[d]` (the
    training mean) settles what no forecast constrains. Windows of more than `FILL_LIMIT` numbers, or without
    `scale`, are filled forward, oldest first, by the ridge's one-step forecast from the (filled) older vectors; without
    ridges, by the same dimension of the next older vector. The oldest vector's gaps are then `fallback`. Padding
    beyond `count` becomes 0, as without missing values. The one rule of the frames' inputs, in training and in
    rollouts."""
    if not torch.isnan(history).any():
        return history
    n, k, d = history.shape
    if ridge_on is not None and scale is not None and k > 1 and k * d <= FILL_LIMIT:
        return _least_squares_fill(history, count, fallback, ridge_on, scale)
    real = torch.arange(k, device=history.device)[None, :] < count[:, None]  # [n, k]
    filled = torch.where(real[..., None], history.float(), 0.0)
    ones = filled.new_ones((n, 1))
    for p in range(k - 1, -1, -1):  # from the oldest position of the window to the most recent
        older = (count - 1 - p).clamp(min=0)  # how many real vectors of the window precede position p
        guess = fallback.float().expand(n, d)
        for j in range(1, k - p):
            if ridge_on is None:
                forecast = filled[:, p + 1]
            else:
                features = torch.cat([filled[:, p + 1: p + 1 + j].reshape(n, j * d), ones], dim=1)
                forecast = features @ ridge_on(min(j, k)).float()
            guess = torch.where((older.clamp(max=k - 1 - p) == j)[:, None] if ridge_on is not None
                                else (older >= 1)[:, None], forecast, guess)
            if ridge_on is None:
                break
        filled[:, p] = torch.where(torch.isnan(filled[:, p]), guess, filled[:, p])
    return filled


def _least_squares_fill(history: torch.Tensor, count: torch.Tensor, fallback: torch.Tensor,
                        ridge_on: Callable[[int], torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """`fill_missing_history` by least squares: minimise over the missing entries m of the window u the sum of
    ||(u_p - forecast_j(u_{p+1..p+j})) / scale||^2 over the vectors p with j older real vectors, plus
    1e-6 ||(m - fallback) / scale||^2. Each term is linear in u, so m solves one small linear system per window."""
    n, k, d = history.shape
    device, width = history.device, k * d
    real = torch.arange(k, device=device)[None, :] < count[:, None]  # [n, k]
    missing = (torch.isnan(history) & real[..., None]).reshape(n, width)
    filled = torch.where(real[..., None] & ~torch.isnan(history), history, 0.0).reshape(n, width).double()
    gappy = missing.any(dim=1).nonzero().squeeze(1)  # only the windows with a gap are solved
    u, keep, real, count = filled[gappy], missing[gappy].double(), real[gappy], count[gappy]
    weight = 1.0 / torch.where(scale > 1e-12, scale, 1.0).double()  # [d]; a constant dimension: 1
    eye = torch.eye(d, dtype=torch.float64, device=device)
    # the equations depend on the window only through its count c: gram[c], linear[c] sum the terms of the vectors p
    # with j older real vectors, p + j <= c - 1
    gram = u.new_zeros((k + 1, width, width))
    linear = u.new_zeros((k + 1, width))
    for p in range(k - 1):
        for j in range(1, k - p):
            w = ridge_on(j).to(device=device, dtype=torch.float64)  # [j*d + 1, d], the vectors most recent first
            # residual = A u + b: the vector at p minus the forecast from the j vectors after it (older)
            a = u.new_zeros((d, width))
            a[:, p * d: (p + 1) * d] = eye
            a[:, (p + 1) * d: (p + 1 + j) * d] = -w[: j * d].T
            a, b = a * weight[:, None], -w[j * d] * weight
            gram[p + j + 1:] += a.T @ a
            linear[p + j + 1:] += a.T @ b
    gram, linear = gram[count.clamp(max=k)], linear[count.clamp(max=k)]
    pull = (1e-3 * weight.repeat(k)) ** 2 * real.repeat_interleave(d, dim=1)  # [windows, width]
    gram = gram + torch.diag_embed(pull)
    linear = linear - pull * fallback.double().repeat(k)
    # minimise (u + m)^T G (u + m) / 2 + l^T (u + m) over m (zero where observed): G_MM m = -(G u + l)_M
    system = gram * keep[:, :, None] * keep[:, None, :] + torch.diag_embed(1.0 - keep)
    solved = torch.linalg.solve(system, -((gram @ u[..., None]).squeeze(-1) + linear) * keep)
    filled[gappy] = u + solved * keep
    return filled.reshape(n, k, d).to(torch.float32)


def within_streams(fn: Callable[..., tuple[torch.Tensor, ...]], vectors: torch.Tensor, positions: torch.Tensor,
                   streams: Optional[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """`fn(vectors, positions)` (each output `[n, ...]`, one row per vector) applied to the vectors of each stream
    alone (`streams` `[v]`; None, or a single stream: to all at once) and put back in the vectors' order."""
    if streams is None or len(streams) == 0 or bool((streams == streams[0]).all()):
        return fn(vectors, positions)
    out = None
    for value in streams.unique():
        index = (streams == value).nonzero().squeeze(1)
        parts = fn(vectors[index], positions[index])
        if out is None:
            out = [part.new_zeros((len(vectors), *part.shape[1:])) for part in parts]
        for whole, part in zip(out, parts):
            whole[index] = part
    return tuple(out)


def previous_in_streams(vectors: torch.Tensor, positions: torch.Tensor,
                        streams: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """`previous_vectors` within each stream (`streams` `[v]`, None for one stream): the previous *state* before a
    state, not the action between them."""
    return within_streams(previous_vectors, vectors, positions, streams)


class PredictionHead(nn.Module):
    """The interface every head implements (shapes in the module docstring). `mean_is_cheap`: whether the model
    may compute the mean on every training step (a diffusion head's mean is a Monte-Carlo average).
    `is_distributional`: whether its draws spread (a deterministic head's are its mean), so that the sampling
    temperature is worth calibrating."""

    mean_is_cheap = True
    is_distributional = True

    def forward(self, hidden: torch.Tensor) -> Any:
        raise NotImplementedError

    def loss(self, params: Any, target: torch.Tensor, frame: Frame,
             observed: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: Any, frame: Frame) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: Any, frame: Frame, num_samples: int = 1, temperature: float = 1.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        raise NotImplementedError

    def start_at_frame(self) -> None:
        """Make the head's mean output 0 in its own units, so that its prediction is the frame's shift (the ridge
        forecast of `predict_residual: ridge`) before training. A head without such a layer keeps its weights."""


class DeterministicHead(PredictionHead):
    """One vector per hidden state: the loss is the `world_model_loss_type` error of that vector, the mean is the
    vector, and every sample is the mean."""

    is_distributional = False

    def __init__(self, net: nn.Module, loss_type: str):
        super().__init__()
        self.net = net
        self.loss_type = loss_type

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden).float()  # [n, d]

    def start_at_frame(self) -> None:
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def loss(self, params: torch.Tensor, target: torch.Tensor, frame: Frame,
             observed: Optional[torch.Tensor] = None) -> torch.Tensor:
        return embedding_errors(frame.to_normalized(params), target, self.loss_type, observed)

    def mean(self, params: torch.Tensor, frame: Frame) -> torch.Tensor:
        return frame.to_normalized(params)

    def sample(self, params, frame, num_samples=1, temperature=1.0, generator=None) -> torch.Tensor:
        mean = self.mean(params, frame)
        return mean.expand(num_samples, *mean.shape)


class MixtureHead(PredictionHead):
    """A mixture of K Gaussians with diagonal covariances over the next vector (as GIVT), in the head's units:
    `params` = (logits `[n, K]`, means `[n, K, d]`, log standard deviations `[n, K, d]`). The loss is the negative
    log-likelihood of the target in normalised units, per dimension; log-sum-exp over components and a floor on
    the standard deviations keep it finite."""

    LOG_STD_RANGE = (-7.0, 5.0)  # standard deviations from about 1e-3 to 150 head units

    def __init__(self, hidden_size: int, embedding_dim: int, components: int):
        super().__init__()
        self.components, self.embedding_dim = components, embedding_dim
        self.trunk = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU())
        self.logits = nn.Linear(hidden_size, components)
        self.means = nn.Linear(hidden_size, components * embedding_dim)
        self.log_stds = nn.Linear(hidden_size, components * embedding_dim)

    def start_at_frame(self) -> None:
        nn.init.zeros_(self.means.weight)
        nn.init.zeros_(self.means.bias)

    def forward(self, hidden: torch.Tensor):
        x = self.trunk(hidden)
        shape = (hidden.shape[0], self.components, self.embedding_dim)
        log_stds = self.log_stds(x).float().view(shape).clamp(*self.LOG_STD_RANGE)
        return self.logits(x).float(), self.means(x).float().view(shape), log_stds

    def loss(self, params, target: torch.Tensor, frame: Frame, observed: Optional[torch.Tensor] = None
             ) -> torch.Tensor:
        """With `observed`, the likelihood of the observed entries: the mixture's marginal over them (a diagonal
        Gaussian's marginal drops the missing dimensions), per observed dimension."""
        logits, means, log_stds = params
        keep = torch.ones_like(target) if observed is None else observed.float()  # [n, d]
        u = torch.nan_to_num(frame.to_head(target))[:, None, :]  # [n, 1, d]; missing entries are left out below
        per_dim = -0.5 * ((u - means) / log_stds.exp()).pow(2) - log_stds - 0.5 * math.log(2 * math.pi)
        log_density = (per_dim * keep[:, None, :]).sum(-1)  # [n, K]
        log_likelihood = torch.logsumexp(torch.log_softmax(logits, dim=-1) + log_density, dim=-1)  # [n]
        # the density of z = shift + scale * u is the density of u over the scale
        log_scale = (torch.log(frame.scale * torch.ones_like(target)) * keep).sum(-1)
        count = keep.sum(-1)
        return (-log_likelihood + log_scale) / count.clamp_min(1) * (count > 0)

    def mean(self, params, frame: Frame) -> torch.Tensor:
        logits, means, _ = params
        return frame.to_normalized((torch.softmax(logits, dim=-1)[..., None] * means).sum(1))

    def sample(self, params, frame, num_samples=1, temperature=1.0, generator=None) -> torch.Tensor:
        """Draws at `temperature` T: each component's standard deviations x T; below 1 the components are also
        drawn from softmax(logits / T) (a cooler forecast keeps to its likelier components; above 1 the weights
        stay as trained). On the double well the spread alone could not narrow the late horizons of a rollout,
        whose width came from draws that switch wells (docs/benchmarks.md)."""
        logits, means, log_stds = params
        n = logits.shape[0]
        sharpen = min(float(temperature), 1.0)
        component = torch.multinomial(torch.softmax(logits / sharpen, dim=-1), num_samples, replacement=True,
                                      generator=generator).T  # [S, n]
        rows = torch.arange(n, device=logits.device)[None, :].expand(num_samples, n)
        noise = torch.randn((num_samples, n, self.embedding_dim), generator=generator, device=logits.device)
        u = means[rows, component] + temperature * log_stds[rows, component].exp() * noise
        return frame.to_normalized(u)


class DiffusionHead(PredictionHead):
    """A small denoising MLP conditioned on the hidden state (as MAR's per-token diffusion loss): the next vector
    (head units) is noised to a continuous level t (cosine schedule) and the MLP learns the velocity
    v = sqrt(a) noise - sqrt(1 - a) vector (a: the signal left at t), which stays well scaled at both ends of the
    schedule where predicting the noise alone does not; sampling runs `diffusion_steps` deterministic DDIM steps
    from Gaussian noise scaled by the temperature. `params` is the conditioning hidden state `[n, h]`; the mean is
    the average of 32 samples with a fixed seed."""

    mean_is_cheap = False
    LOSS_REPEATS = 4  # noise levels drawn per target and step (MAR draws several too: a less noisy gradient)
    MEAN_SAMPLES = 32
    CLIP = 20.0  # head units (residual steps and normalised vectors are of order 1): a guard, as samplers clip

    def __init__(self, hidden_size: int, embedding_dim: int, steps: int, width: int = 256, blocks: int = 3):
        super().__init__()
        self.embedding_dim, self.steps = embedding_dim, steps
        width = max(width, 2 * embedding_dim)
        self.condition = nn.Linear(hidden_size, width)
        self.time = nn.Sequential(nn.Linear(64, width), nn.SiLU(), nn.Linear(width, width))
        self.inputs = nn.Linear(embedding_dim, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(),
                                                  nn.Linear(width, width)) for _ in range(blocks))
        self.output = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embedding_dim))

    @staticmethod
    def alpha_bar(t: torch.Tensor) -> torch.Tensor:
        """The share of signal left at noise level t in [0, 1] (cosine schedule, kept away from exactly 0)."""
        return torch.cos((t + 0.008) / 1.008 * math.pi / 2).pow(2).clamp(min=1e-5)

    def predict_velocity(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x `[m, d]` at noise levels t `[m]`, condition `[m, h]` -> predicted velocity `[m, d]`."""
        frequencies = torch.exp(torch.arange(32, device=x.device) * (-math.log(10_000.0) / 32))
        angles = 1000 * t[:, None] * frequencies[None, :]
        h = self.inputs(x) + self.time(torch.cat([angles.sin(), angles.cos()], dim=-1)) + self.condition(condition)
        for block in self.blocks:
            h = h + block(h)
        return self.output(h)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float()

    def loss(self, params, target: torch.Tensor, frame: Frame, observed: Optional[torch.Tensor] = None
             ) -> torch.Tensor:
        if observed is not None:  # refused when the model is configured (`missing_values`)
            raise ValueError("the diffusion head cannot leave out missing entries")
        u = frame.to_head(target).repeat(self.LOSS_REPEATS, 1)  # [r * n, d]
        condition = params.repeat(self.LOSS_REPEATS, 1)
        t = torch.rand(u.shape[0], device=u.device)
        noise = torch.randn_like(u)
        a = self.alpha_bar(t)[:, None]
        noisy = a.sqrt() * u + (1 - a).sqrt() * noise
        velocity = a.sqrt() * noise - (1 - a).sqrt() * u
        error = (self.predict_velocity(noisy, t, condition) - velocity).pow(2).mean(-1)  # [r * n]
        return error.view(self.LOSS_REPEATS, -1).mean(0)

    def mean(self, params, frame: Frame) -> torch.Tensor:
        generator = torch.Generator(device=params.device).manual_seed(0)
        return self.sample(params, frame, self.MEAN_SAMPLES, generator=generator).mean(0)

    @torch.no_grad()
    def sample(self, params, frame, num_samples=1, temperature=1.0, generator=None) -> torch.Tensor:
        n = params.shape[0]
        condition = params.repeat(num_samples, 1)  # [S * n, h]
        x = temperature * torch.randn((num_samples * n, self.embedding_dim), generator=generator,
                                      device=params.device)
        levels = torch.linspace(1.0, 0.0, self.steps + 1, device=params.device)
        for now, after in zip(levels[:-1], levels[1:]):
            a_now, a_after = self.alpha_bar(now), self.alpha_bar(after)
            velocity = self.predict_velocity(x, now.expand(x.shape[0]), condition)
            clean = (a_now.sqrt() * x - (1 - a_now).sqrt() * velocity).clamp(-self.CLIP, self.CLIP)
            noise = (1 - a_now).sqrt() * x + a_now.sqrt() * velocity
            x = a_after.sqrt() * clean + (1 - a_after).sqrt() * noise
        return frame.to_normalized(x.view(num_samples, n, self.embedding_dim))


class QuantileHead(PredictionHead):
    """Quantiles of each dimension of the next vector at fixed levels (as Chronos-Bolt and TimesFM), trained by the
    pinball loss: `params` = the quantiles `[n, Q, d]` in head units, sorted along the levels so that they never
    cross. The distribution is the piecewise-linear quantile function through them, continued linearly from the
    outer two levels to 0 and 1; the mean is its mean (the mean of the quantiles at the levels 0.1, ..., 0.9, which
    are the midpoints of Q equal bins, is a close approximation; it is used as it is). Samples invert that function
    at uniform draws, each dimension with its own draw; `temperature` scales them about the median."""

    LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

    def __init__(self, hidden_size: int, embedding_dim: int):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.net = build_mlp("mlp", hidden_size, hidden_size, len(self.LEVELS) * embedding_dim)
        self.register_buffer("levels", torch.tensor(self.LEVELS), persistent=False)

    def start_at_frame(self) -> None:
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        quantiles = self.net(hidden).float().view(hidden.shape[0], len(self.LEVELS), self.embedding_dim)
        return quantiles.sort(dim=1).values  # [n, Q, d], non-decreasing in the level

    def loss(self, params: torch.Tensor, target: torch.Tensor, frame: Frame,
             observed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The pinball loss of each level, in normalised units, averaged over levels and (observed) dimensions:
        `[n]`."""
        shift = frame.shift[:, None, :] if frame.shift.dim() == 2 else frame.shift
        error = target[:, None, :] - (shift + params * frame.scale)  # [n, Q, d]
        levels = self.levels[None, :, None]
        pinball = torch.maximum(levels * error, (levels - 1) * error)
        if observed is None:
            return pinball.mean(dim=(1, 2))
        keep = observed[:, None, :]
        count = observed.sum(-1)
        return torch.where(keep, pinball, 0.0).sum(dim=(1, 2)) / (len(self.LEVELS) * count.clamp_min(1)) * (count > 0)

    def mean(self, params: torch.Tensor, frame: Frame) -> torch.Tensor:
        return frame.to_normalized(params.mean(dim=1))

    def sample(self, params, frame, num_samples=1, temperature=1.0, generator=None) -> torch.Tensor:
        n, q, d = params.shape
        levels = self.levels
        # the quantile function at 0 and 1: the outer segments continued
        low = params[:, :1] - levels[0] * (params[:, 1:2] - params[:, :1]) / (levels[1] - levels[0])
        high = params[:, -1:] + (1 - levels[-1]) * (params[:, -1:] - params[:, -2:-1]) / (levels[-1] - levels[-2])
        knots = torch.cat([low, params, high], dim=1)  # [n, Q + 2, d]
        at = torch.cat([levels.new_zeros(1), levels, levels.new_ones(1)])  # [Q + 2]
        draws = torch.rand((num_samples, n, d), generator=generator, device=params.device)
        upper = torch.searchsorted(at, draws.clamp(0, 1).reshape(-1)).clamp(1, q + 1).view(num_samples, n, d)
        left, right = at[upper - 1], at[upper]
        rows = torch.arange(n, device=params.device)[None, :, None]
        dims = torch.arange(d, device=params.device)[None, None, :]
        value_left, value_right = knots[rows, upper - 1, dims], knots[rows, upper, dims]
        u = value_left + (draws - left) / (right - left) * (value_right - value_left)  # [S, n, d]
        median = params[:, q // 2][None]
        return frame.to_normalized(median + temperature * (u - median))


def build_mlp(kind: str, in_features: int, hidden: int, out_features: int) -> nn.Module:
    """`linear`: one Linear; `mlp`: Linear-GELU-Linear (the projector's and the deterministic heads' shapes)."""
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, out_features))
    raise ValueError(f"Unknown module type '{kind}' (use mlp or linear).")


HeadBuilder = Callable[[Any, int], PredictionHead]  # (WorldModelConfig, the dimension of its stream) -> head
PREDICTION_HEADS: dict[str, HeadBuilder] = {}
register_head = registrar(PREDICTION_HEADS)


@register_head("mlp")
def mlp_head(config, embedding_dim: int) -> PredictionHead:
    h = config.hidden_size
    return DeterministicHead(build_mlp("mlp", h, h, embedding_dim), config.world_model_loss_type)


@register_head("mixture")
def mixture_head(config, embedding_dim: int) -> PredictionHead:
    return MixtureHead(config.hidden_size, embedding_dim, config.mixture_components)


@register_head("diffusion")
def diffusion_head(config, embedding_dim: int) -> PredictionHead:
    return DiffusionHead(config.hidden_size, embedding_dim, config.diffusion_steps)


@register_head("quantile")
def quantile_head(config, embedding_dim: int) -> PredictionHead:
    return QuantileHead(config.hidden_size, embedding_dim)


@register_head("linear")
def linear_head(config, embedding_dim: int) -> PredictionHead:
    return DeterministicHead(build_mlp("linear", config.hidden_size, 0, embedding_dim), config.world_model_loss_type)


def build_head(config, embedding_dim: Optional[int] = None) -> PredictionHead:
    """The head of `config.prediction_head_type` for vectors of `embedding_dim` (default `config.embedding_dim`)."""
    kind = config.prediction_head_type
    if kind not in PREDICTION_HEADS:
        raise ValueError(f"Unknown prediction_head_type '{kind}' (registered: {', '.join(PREDICTION_HEADS)}).")
    return PREDICTION_HEADS[kind](config, embedding_dim or config.embedding_dim)
