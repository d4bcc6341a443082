"""Statistics of the training vectors, kept with the model: normalisation (`embedding_norm`), the scale of a step
(`predict_residual`), and the baselines of evaluation (training mean, ridge regression).

Normalisation maps a vector x (data units) to z = (clip(x, low, high) - center) / scale, per dimension:
- `none`: z = x;
- `standard`: center = mean, scale = standard deviation;
- `robust`: center = median, scale = 0.7413 * interquartile range (the standard deviation of a normal
  distribution with that IQR), after clipping each dimension to its 0.1% and 99.9% quantiles (Meta's Large Concept
  Model normalises sentence embeddings this way). Quantiles come from a uniform sample of at most 100,000 vectors.
The loss is computed on z; predictions are turned back into data units."""

from typing import Iterable, Optional

import numpy as np
import torch
from torch import nn

ROBUST_QUANTILES = (0.001, 0.999)
IQR_TO_STD = 0.7413
SAMPLE_SIZE = 100_000


class EmbeddingStatistics(nn.Module):
    """Buffers (saved with the model): `mean`, `std`, `center`, `scale`, `low`, `high` `[d]`,
    `delta_scale` `[d]` (std of the step between consecutive normalised vectors of a row), `ridge` `[k*d + 1, d]`
    (ridge regression from the last k vectors, data units), and the spread of the two baselines' one-step errors on
    the training split, data units: `step_std` `[d]` (persistence) and `ridge_residual_std` `[d]`."""

    def __init__(self, embedding_dim: int, ridge_history: int = 2, shorter_ridges: bool = False,
                 condition_width: int = 0):
        super().__init__()
        d = embedding_dim
        for name, value in (("mean", 0.0), ("std", 1.0), ("center", 0.0), ("scale", 1.0), ("low", -np.inf),
                            ("high", np.inf), ("delta_scale", 1.0), ("step_std", 0.0), ("ridge_residual_std", 0.0)):
            self.register_buffer(name, torch.full((d,), value))
        self.register_buffer("ridge", torch.zeros(ridge_history * d + 1, d))
        self.ridge_history = ridge_history
        # `predict_residual: ridge`: the ridges on the last j < k vectors too, for vectors with a shorter history
        self.shorter = list(range(1, ridge_history)) if shorter_ridges else []
        for j in self.shorter:
            self.register_buffer(f"ridge_{j}", torch.zeros(j * d + 1, d))
        # the frame's ridges when it also reads the last j vectors of the condition streams (`condition_width`: their
        # dimensions summed): `frame_ridge_{j}` `[j*d + j*condition_width + 1, d]`, j = 1..k
        self.condition_width = condition_width
        if condition_width:
            for j in range(1, ridge_history + 1):
                self.register_buffer(f"frame_ridge_{j}", torch.zeros(j * (d + condition_width) + 1, d))

    def ridge_on(self, history: int) -> torch.Tensor:
        """The ridge weights `[j*d + 1, d]` on the last `history` = j vectors (j = k: `ridge`)."""
        return self.ridge if history == self.ridge_history else getattr(self, f"ridge_{history}")

    def frame_ridge_on(self, history: int) -> torch.Tensor:
        """The frame's ridge on the last j vectors: with conditions `frame_ridge_{j}`, else `ridge_on(j)`."""
        return getattr(self, f"frame_ridge_{history}") if self.condition_width else self.ridge_on(history)
        self.active = True  # False for `embedding_norm: none`: normalising is then the identity, skipped

    def normalize(self, vectors: torch.Tensor) -> torch.Tensor:
        """`[..., d]` data units -> normalised, float32."""
        x = vectors.float()
        if not self.active:
            return x
        return (torch.minimum(torch.maximum(x, self.low), self.high) - self.center) / self.scale

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z.float() * self.scale + self.center if self.active else z.float()

    @torch.no_grad()
    def fit(self, rows: Iterable[np.ndarray], norm: str, ridge_lambda: float = 1e-3, seed: int = 0,
            conditions: Optional[Iterable[np.ndarray]] = None) -> None:
        """`rows`: the vector stream `[v, d]` of every training row (called twice: it must be re-iterable);
        `conditions` (with `condition_width`): for each row, the condition history of each of its vectors
        `[v, k, condition_width]` (`condition_history`), read with `rows` in the second pass."""
        d = self.mean.shape[0]
        k = self.ridge_history
        total, squares, count = np.zeros(d), np.zeros(d), 0
        for stream in rows:
            if len(stream):
                x = np.asarray(stream, dtype=np.float64)
                total += x.sum(axis=0)
                squares += (x**2).sum(axis=0)
                count += len(x)
        if count == 0:
            return
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(std))
        if norm == "standard":
            self._set(center=mean, scale=_safe(std))
        elif norm == "robust":
            rng = np.random.default_rng(seed)  # each vector kept with the same probability
            keep = min(1.0, SAMPLE_SIZE / count)
            values = np.concatenate([np.asarray(s, dtype=np.float64)[rng.random(len(s)) < keep] for s in rows
                                     if len(s)] or [mean[None]])
            low, high = np.quantile(values, ROBUST_QUANTILES, axis=0)
            clipped = np.clip(values, low, high)
            q1, median, q3 = np.quantile(clipped, (0.25, 0.5, 0.75), axis=0)
            self._set(center=median, scale=_safe(IQR_TO_STD * (q3 - q1)), low=low, high=high)
        elif norm != "none":
            raise ValueError(f"Unknown embedding_norm '{norm}' (none, standard or robust).")
        self.active = norm != "none"

        # second pass: step sizes in normalised space, the ridge normal equations in data units, and the squares
        # behind the two baselines' one-step error spreads (persistence: the steps; ridge: from its normal equations)
        step_sum, step_squares, raw_squares, steps = np.zeros(d), np.zeros(d), np.zeros(d), 0
        # the normal equations of the ridge on the last j vectors, for j = k and the shorter histories
        normal = {j: (np.zeros((j * d + 1, j * d + 1)), np.zeros((j * d + 1, d))) for j in self.shorter + [k]}
        # and with conditions, those of the frame's ridges, which also read the last j condition vectors
        c = self.condition_width
        framed = {j: (np.zeros((j * (d + c) + 1,) * 2), np.zeros((j * (d + c) + 1, d)))
                  for j in (range(1, k + 1) if c else ())}
        if c and conditions is None:
            raise ValueError("the frame reads conditions: `fit` needs their history (`conditions`)")
        histories = iter(conditions) if c else None
        target_squares = np.zeros(d)
        for stream in rows:
            history = next(histories) if c else None
            if not len(stream):
                continue
            x = np.asarray(stream, dtype=np.float64)
            z = self.normalize(torch.from_numpy(np.asarray(stream, dtype=np.float32))).numpy().astype(np.float64)
            if len(z) > 1:
                delta = np.diff(z, axis=0)
                step_sum += delta.sum(axis=0)
                step_squares += (delta**2).sum(axis=0)
                raw_squares += (np.diff(x, axis=0) ** 2).sum(axis=0)
                steps += len(delta)
            for j in sorted(normal.keys() | framed.keys()):
                if len(x) <= j:
                    continue
                windows = np.stack([x[i: len(x) - j + i] for i in range(j)], axis=1)  # [n, j, d], oldest first
                if j in normal:
                    _accumulate(normal[j], ridge_features(windows), x[j:])
                if j in framed:
                    _accumulate(framed[j], ridge_features(windows, history[j:, :j]), x[j:])
            if len(x) > k:
                target_squares += (x[k:] ** 2).sum(axis=0)
        if steps:
            step_mean = step_sum / steps
            self.delta_scale.copy_(torch.from_numpy(_safe(np.sqrt(np.maximum(step_squares / steps - step_mean**2, 0)))))
            self.step_std.copy_(torch.from_numpy(np.sqrt(raw_squares / steps)))
        gram, cross = normal[k]
        if gram[-1, -1] > 0:
            w = _solve_ridge(gram, cross, ridge_lambda)
            self.ridge.copy_(torch.from_numpy(w))
            # sum over targets of (y - features @ w)^2, per dimension, without another pass over the rows
            residual_squares = target_squares - 2 * (w * cross).sum(axis=0) + (w * (gram @ w)).sum(axis=0)
            self.ridge_residual_std.copy_(torch.from_numpy(np.sqrt(np.maximum(residual_squares, 0) / gram[-1, -1])))
        for j in self.shorter:
            if normal[j][0][-1, -1] > 0:
                getattr(self, f"ridge_{j}").copy_(torch.from_numpy(_solve_ridge(*normal[j], ridge_lambda)))
        for j, (gram, cross) in framed.items():
            if gram[-1, -1] > 0:
                getattr(self, f"frame_ridge_{j}").copy_(torch.from_numpy(_solve_ridge(gram, cross, ridge_lambda)))

    def _set(self, center: np.ndarray, scale: np.ndarray, low: Optional[np.ndarray] = None,
             high: Optional[np.ndarray] = None) -> None:
        self.center.copy_(torch.from_numpy(center))
        self.scale.copy_(torch.from_numpy(scale))
        if low is not None:
            self.low.copy_(torch.from_numpy(low))
            self.high.copy_(torch.from_numpy(high))


def ridge_features(windows: np.ndarray, conditions: Optional[np.ndarray] = None) -> np.ndarray:
    """The ridge regression's input, in one place: windows of the last k vectors `[n, k, d]` (most recent last) ->
    `[n, k*d + 1]`, the vectors most recent first, then a constant 1 for the intercept. With `conditions`, the
    frame's ridge that reads them: the last k vectors of the condition streams before each target `[n, k, c]` (most
    recent first, zeros where there are fewer) come after the vectors: `[n, k*d + k*c + 1]`."""
    windows = np.asarray(windows, dtype=np.float64)
    n = len(windows)
    parts = [windows[:, ::-1].reshape(n, -1)]
    if conditions is not None:
        parts.append(np.asarray(conditions, dtype=np.float64).reshape(n, -1))
    return np.concatenate(parts + [np.ones((n, 1))], axis=1)


def _accumulate(equations: tuple[np.ndarray, np.ndarray], features: np.ndarray, targets: np.ndarray) -> None:
    """Add transitions to normal equations (gram, cross), in place."""
    gram, cross = equations
    gram += features.T @ features
    cross += features.T @ targets


def _solve_ridge(gram: np.ndarray, cross: np.ndarray, ridge_lambda: float) -> np.ndarray:
    """Ridge weights from the normal equations: the penalty is `ridge_lambda` times the number of transitions (the
    intercept's diagonal entry counts them), and the intercept is not shrunk."""
    penalty = ridge_lambda * gram[-1, -1] * np.eye(len(gram))
    penalty[-1, -1] = 0.0
    return np.linalg.solve(gram + penalty, cross)


def _safe(scale: np.ndarray) -> np.ndarray:
    """A dimension that never varies keeps scale 1 rather than dividing by zero."""
    return np.where(scale > 1e-12, scale, 1.0)
