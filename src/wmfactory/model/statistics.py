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
HOLD_OUT_EVERY = 5  # the ridges' history and penalty are chosen on every fifth training row
PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # ridge penalties tried, per transition, standardised features
FRAME_FORMS = ("levels", "increments", "auto")
FORM_HORIZON = 8  # `frame_form: auto` scores each form by rollouts of this many steps on the held-out rows
FORM_ENTRIES = 4_000_000  # the most vector entries of held-out rows kept for that score (the first rows up to it)
# increments are kept only when their score is at most this share of the levels': where the history moves, the trained
# head makes up most of either frame's error, and the level frame is the better start (docs/quality.md); where it
# holds still the head cannot move the frame (`frame_step: local`), and only increments are exact
FORM_MARGIN = 0.5


class EmbeddingStatistics(nn.Module):
    """Buffers (saved with the model): `mean`, `std`, `center`, `scale`, `low`, `high` `[d]`,
    `delta_scale` `[d]` (std of the step between consecutive normalised vectors of a row), `ridge` `[k*d + 1, d]`
    (ridge regression from the last k vectors, data units), and the spread of the two baselines' one-step errors on
    the training split, data units: `step_std` `[d]` (persistence) and `ridge_residual_std` `[d]`."""

    def __init__(self, embedding_dim: int, ridge_history: int = 2, shorter_ridges: bool = False,
                 condition_width: int = 0, frame_form: str = "levels"):
        super().__init__()
        d = embedding_dim
        for name, value in (("mean", 0.0), ("std", 1.0), ("center", 0.0), ("scale", 1.0), ("low", -np.inf),
                            ("high", np.inf), ("delta_scale", 1.0), ("step_std", 0.0), ("ridge_residual_std", 0.0)):
            self.register_buffer(name, torch.full((d,), value))
        self.active = True  # False for `embedding_norm: none`: normalising is then the identity, skipped
        self.choice: dict = {}  # the ridges' chosen history and penalty, after `fit`
        self.register_buffer("ridge", torch.zeros(ridge_history * d + 1, d))
        self.ridge_history = ridge_history
        # `predict_residual: ridge`: the ridges on the last j < k vectors too, for vectors with a shorter history
        self.shorter = list(range(1, ridge_history)) if shorter_ridges else []
        for j in self.shorter:
            self.register_buffer(f"ridge_{j}", torch.zeros(j * d + 1, d))
        # the frame's ridges when it also reads the last j vectors of the condition streams (`condition_width`: their
        # dimensions summed), or may be fitted on increments (`frame_form: increments` or `auto`): `frame_ridge_{j}`
        # `[j*d + j*condition_width + 1, d]`, j = 1..k, in the layout of `ridge_features`
        if frame_form not in FRAME_FORMS:
            raise ValueError(f"Unknown frame_form '{frame_form}' ({', '.join(FRAME_FORMS)}).")
        self.condition_width = condition_width
        self.frame_form = frame_form
        if condition_width or frame_form != "levels":
            for j in range(1, ridge_history + 1):
                self.register_buffer(f"frame_ridge_{j}", torch.zeros(j * (d + condition_width) + 1, d))

    def ridge_on(self, history: int) -> torch.Tensor:
        """The ridge weights `[j*d + 1, d]` on the last `history` = j vectors (j = k: `ridge`)."""
        return self.ridge if history == self.ridge_history else getattr(self, f"ridge_{history}")

    def frame_ridge_on(self, history: int) -> torch.Tensor:
        """The frame's ridge on the last j vectors: with conditions or on increments `frame_ridge_{j}`, else
        `ridge_on(j)`."""
        own = self.condition_width or self.frame_form != "levels"
        return getattr(self, f"frame_ridge_{history}") if own else self.ridge_on(history)

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
            conditions: Optional[Iterable[np.ndarray]] = None, select: bool = False) -> None:
        """`rows`: the vector stream `[v, d]` of every training row (called twice: it must be re-iterable);
        `conditions` (with `condition_width`): for each row, the condition history of each of its vectors
        `[v, k, condition_width]` (`condition_history`), read with `rows` in the second pass.

        `select`: choose each ridge's history j <= k and penalty (among `PENALTIES`) by its squared error on
        held-out training transitions (every fifth row; with fewer than five rows, the last fifth of each row),
        fitted on the others, then refit on every transition with that choice; a chosen j < k is stored as the
        k-history weights with zeros on the older vectors. Else history k and penalty `ridge_lambda`.

        `frame_form: auto` (with `select`): the frame's ridge is fitted both ways, on levels and on increments, each
        with its own history and penalty chosen as above, and the form kept is the one whose rollouts of
        `FORM_HORIZON` steps on the held-out rows have the smaller scale-free error (`_scale_free_error`: each
        absolute error over its row's in-sample naive error before the rollout, as MASE), increments only when
        their error is at most `FORM_MARGIN` of the levels'; levels without `select`. The choice is left in
        `self.choice` (`history`, `penalty`, and `frame_history`, `frame_penalty` with conditions or another form;
        `frame_form` and both forms' scores with `auto`)."""
        d = self.mean.shape[0]
        k = self.ridge_history
        # missing entries (NaN, `missing_values: mask`) are left out of every sum: each dimension has its own count
        total, squares, count, rows_seen = np.zeros(d), np.zeros(d), np.zeros(d), 0
        for stream in rows:
            rows_seen += 1
            if len(stream):
                x = np.asarray(stream, dtype=np.float64)
                total += np.nansum(x, axis=0)
                squares += np.nansum(x**2, axis=0)
                count += (~np.isnan(x)).sum(axis=0)
        if count.sum() == 0:
            return
        mean = total / np.maximum(count, 1)
        std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(std))
        if norm == "standard":
            self._set(center=mean, scale=_safe(std))
        elif norm == "robust":
            rng = np.random.default_rng(seed)  # each vector kept with the same probability
            keep = min(1.0, SAMPLE_SIZE / count.max())
            values = np.concatenate([np.asarray(s, dtype=np.float64)[rng.random(len(s)) < keep] for s in rows
                                     if len(s)] or [mean[None]])
            low, high = np.nanquantile(values, ROBUST_QUANTILES, axis=0)
            clipped = np.clip(values, low, high)
            q1, median, q3 = np.nanquantile(clipped, (0.25, 0.5, 0.75), axis=0)
            self._set(center=median, scale=_safe(IQR_TO_STD * (q3 - q1)), low=low, high=high)
        elif norm != "none":
            raise ValueError(f"Unknown embedding_norm '{norm}' (none, standard or robust).")
        self.active = norm != "none"

        # second pass: step sizes in normalised space, the ridge normal equations in data units, and the squares
        # behind the two baselines' one-step error spreads (persistence: the steps; ridge: from its normal equations)
        step_sum, step_squares, raw_squares, steps = np.zeros(d), np.zeros(d), np.zeros(d), np.zeros(d)
        # the normal equations of the ridges on the last j = 1..k vectors (state-only: eval's baseline, and the frame
        # without conditions), and with conditions those of the frame's ridges, which also read the last j condition
        # vectors; each as [all training rows, the held-out rows] (the held-out ones choose history and penalty)
        c = self.condition_width
        normal = {j: _Equations(j * d + 1, d) for j in range(1, k + 1)}
        framed = {j: _Equations(j * (d + c) + 1, d) for j in (range(1, k + 1) if c else ())}
        if self.frame_form != "levels" and not c:  # the frame reads what eval's ridge reads, maybe on increments
            framed = normal
        choose_form = self.frame_form == "auto" and select
        kept, kept_entries = [], 0  # held-out rows (vectors, condition history, held targets) that score the forms
        if c and conditions is None:
            raise ValueError("the frame reads conditions: `fit` needs their history (`conditions`)")
        histories = iter(conditions) if c else None
        target_squares, held_squares = np.zeros(d), np.zeros(d)
        by_row = rows_seen >= HOLD_OUT_EVERY  # else hold out the last fifth of each row's transitions
        for number, stream in enumerate(rows):
            history = next(histories) if c else None
            if not len(stream):
                continue
            x = np.asarray(stream, dtype=np.float64)
            z = self.normalize(torch.from_numpy(np.asarray(stream, dtype=np.float32))).numpy().astype(np.float64)
            if len(z) > 1:  # the steps between two observed entries
                delta = np.diff(z, axis=0)
                step_sum += np.nansum(delta, axis=0)
                step_squares += np.nansum(delta**2, axis=0)
                raw_squares += np.nansum(np.diff(x, axis=0) ** 2, axis=0)
                steps += (~np.isnan(delta)).sum(axis=0)
            held = np.full(len(x), number % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1) if by_row else (
                np.arange(len(x)) >= len(x) - len(x) // HOLD_OUT_EVERY)  # per target index
            held &= select  # without a choice to make, nothing is held out (and no held-out equations are summed)
            if choose_form and held.any() and kept_entries + x.size <= FORM_ENTRIES:
                kept.append((x, None if history is None else np.nan_to_num(np.asarray(history, dtype=np.float64)),
                             held))
                kept_entries += x.size
            # with missing values (NaN), a ridge learns from the transitions whose window and target are whole
            complete = ~np.isnan(x).any(axis=1)
            for j in range(1, k + 1):
                if len(x) <= j:
                    continue
                windows = np.stack([x[i: len(x) - j + i] for i in range(j)], axis=1)  # [n, j, d], oldest first
                use = complete[j:] & complete[np.arange(len(x) - j)[:, None] + np.arange(j)[None, :]].all(axis=1)
                normal[j].add(ridge_features(windows[use]), x[j:][use], held[j:][use])
                if c:
                    framed[j].add(ridge_features(windows[use], np.nan_to_num(history[j:, :j][use])), x[j:][use],
                                  held[j:][use])
            if len(x) > k:
                use = complete[k:] & complete[np.arange(len(x) - k)[:, None] + np.arange(k)[None, :]].all(axis=1)
                target_squares += (x[k:][use] ** 2).sum(axis=0)
                held_squares += (x[k:][held[k:] & use] ** 2).sum(axis=0)
        if steps.sum():
            steps = np.maximum(steps, 1)
            step_mean = step_sum / steps
            self.delta_scale.copy_(torch.from_numpy(_safe(np.sqrt(np.maximum(step_squares / steps - step_mean**2, 0)))))
            self.step_std.copy_(torch.from_numpy(np.sqrt(raw_squares / steps)))
        self.choice = {}
        fitted = _fit_ridges(normal, held_squares, d, 0, ridge_lambda, select)
        if fitted is not None:
            ridges, self.choice["history"], self.choice["penalty"], _ = fitted
            w = ridges[k]
            self.ridge.copy_(torch.from_numpy(w))
            gram, cross = normal[k].total
            # sum over targets of (y - features @ w)^2, per dimension, without another pass over the rows
            residual_squares = target_squares - 2 * (w * cross).sum(axis=0) + (w * (gram @ w)).sum(axis=0)
            self.ridge_residual_std.copy_(torch.from_numpy(np.sqrt(np.maximum(residual_squares, 0) / gram[-1, -1])))
            for j in self.shorter:
                getattr(self, f"ridge_{j}").copy_(torch.from_numpy(ridges[j]))
        if c or self.frame_form != "levels":
            # without conditions the frame's levels are eval's ridge, fitted above
            fitted = self._fit_frame(framed, held_squares, d, c, ridge_lambda, select, kept,
                                     levels=fitted if framed is normal else None)
            if fitted is not None:
                ridges, self.choice["frame_history"], self.choice["frame_penalty"], _ = fitted
                for j in range(1, k + 1):
                    getattr(self, f"frame_ridge_{j}").copy_(torch.from_numpy(ridges[j]))

    def _fit_frame(self, equations: dict, held_squares: np.ndarray, d: int, c: int, ridge_lambda: float,
                   select: bool, kept: list, levels: Optional[tuple] = None) -> Optional[tuple]:
        """The frame's ridges in `self.frame_form` (`fit`); with `auto`, the form chosen on the `kept` held-out rows
        is written to `self.choice`. `levels`: the fit on levels of these `equations`, where it is already made."""
        if self.frame_form != "auto":
            return _fit_ridges(equations, held_squares, d, c, ridge_lambda, select, self.frame_form == "increments")
        fits = {"levels": levels or _fit_ridges(equations, held_squares, d, c, ridge_lambda, select),
                "increments": _fit_ridges(equations, held_squares, d, c, ridge_lambda, select, increments=True)}
        if fits["levels"] is None:
            return None
        form = "levels"
        if kept and fits["levels"][3] is not None and fits["increments"][3] is not None:
            scores = {name: _scale_free_error(fit[3], kept, self.ridge_history, d, c) for name, fit in fits.items()}
            self.choice.update({f"frame_score_{name}": score for name, score in scores.items()})
            if scores["increments"] <= FORM_MARGIN * scores["levels"]:
                form = "increments"
        self.choice["frame_form"] = form
        return fits[form]

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
    parts = [windows[:, ::-1].reshape(n, windows.shape[1] * windows.shape[2])]
    if conditions is not None:
        conditions = np.asarray(conditions, dtype=np.float64)
        parts.append(conditions.reshape(n, conditions.shape[1] * conditions.shape[2]))
    return np.concatenate(parts + [np.ones((n, 1))], axis=1)


class _Equations:
    """The normal equations (gram, cross) of a ridge, over every transition (`total`) and over the held-out ones."""

    def __init__(self, width: int, d: int):
        self.total = (np.zeros((width, width)), np.zeros((width, d)))
        self.held = (np.zeros((width, width)), np.zeros((width, d)))

    def add(self, features: np.ndarray, targets: np.ndarray, held: np.ndarray) -> None:
        for (gram, cross), (f, y) in ((self.total, (features, targets)), (self.held, (features[held], targets[held]))):
            gram += f.T @ f
            cross += f.T @ y

    def training(self) -> tuple[np.ndarray, np.ndarray]:
        """The equations of the transitions that are not held out."""
        return self.total[0] - self.held[0], self.total[1] - self.held[1]


def _fit_ridges(equations: dict[int, _Equations], held_squares: np.ndarray, d: int, c: int, ridge_lambda: float,
                select: bool, increments: bool = False) -> Optional[tuple[dict, int, float, Optional[np.ndarray]]]:
    """The weights of the ridges on the last j = 1..k vectors ({j: weights}), the history and the penalty used (see
    `EmbeddingStatistics.fit`), and the chosen ridge fitted without the held-out transitions, as weights on k
    vectors (None without a choice); None without a transition of history k. `increments`: each constrained to the
    last vector plus a ridge on the steps between the last j vectors (and the conditions), no intercept
    (`_solve_increments`)."""

    def solve(pair, penalty, j):
        return _solve_increments(*pair, penalty, j, d, c) if increments else _solve_ridge(*pair, penalty)

    k = max(equations)
    if equations[k].total[0][-1, -1] == 0:
        return None
    history, penalty = k, ridge_lambda
    held_gram, held_cross = equations[k].held  # every j is scored on the same held-out transitions: history >= k
    trained = {j: e.training() for j, e in equations.items()}
    chosen = None
    if select and held_gram[-1, -1] > 0 and trained[k][0][-1, -1] > 0:
        # the shorter history and the larger penalty unless a longer or smaller one is better by more than rounding
        # (1e-9 of the targets' squares: on noise-free data every candidate is exact, and the simplest is kept)
        best, tie = np.inf, 1e-9 * held_squares.sum()
        for j in range(1, k + 1):
            index = ridge_sub_block(j, k, d, c)
            gram, cross = held_gram[np.ix_(index, index)], held_cross[index]
            for candidate in sorted(PENALTIES, reverse=True):
                w = solve(trained[j], candidate, j)
                error = held_squares.sum() - 2 * (w * cross).sum() + (w * (gram @ w)).sum()
                if error < best - tie:
                    best, history, penalty = error, j, candidate
        chosen = _widen(solve(trained[history], penalty, history), history, k, d, c)
    weights = {j: solve(equations[j].total, penalty, j) for j in range(1, history + 1)}
    for j in range(history + 1, k + 1):  # the chosen history, as weights on j vectors: zeros on the older ones
        weights[j] = _widen(weights[history], history, j, d, c)
    return weights, history, penalty, chosen


def _widen(weights: np.ndarray, j: int, k: int, d: int, c: int) -> np.ndarray:
    """The weights of a ridge on the last j vectors as those of one on the last k >= j: zeros on the older ones."""
    w = np.zeros((k * (d + c) + 1, d))
    w[ridge_sub_block(j, k, d, c)] = weights
    return w


def _scale_free_error(weights: np.ndarray, rows: list, k: int, d: int, c: int,
                      horizon: int = FORM_HORIZON) -> float:
    """The mean over the `rows`' scored cells of |forecast - truth| / scale of rollouts of the ridge `weights`
    `[k*d + k*c + 1, d]` (`ridge_features`' layout): from every `horizon`-th held-out target of each row (`rows`:
    (vectors `[L, d]`, condition history `[L, k, c]` or None, held `[L]`), the held targets a suffix of the row)
    whose last k vectors are whole, each forecast fed back, the known conditions read as given. `scale`: per
    dimension, the row's mean absolute step before the rollout's first target (MASE's in-sample seasonal naive
    error, season 1); cells whose truth is missing or whose scale is 0 are not scored."""
    total, count = 0.0, 0
    for x, history, held in rows:
        length = len(x)
        first = max(int(np.argmax(held)), k, 2)
        origins = np.arange(first, length, horizon)
        if not len(origins):
            continue
        steps = np.abs(np.diff(x, axis=0))
        sums = np.concatenate([np.zeros((1, d)), np.nancumsum(steps, axis=0)])  # [L, d]: steps before index t
        counts = np.concatenate([np.zeros((1, d)), np.cumsum(~np.isnan(steps), axis=0)])
        scale = sums[origins - 1] / np.maximum(counts[origins - 1], 1)  # [O, d]: the steps among x[:t]
        scale = np.where(counts[origins - 1] > 0, scale, 0.0)
        windows = np.stack([x[origins - k + i] for i in range(k)], axis=1)  # [O, k, d], oldest first
        whole = ~np.isnan(windows).any(axis=(1, 2))
        origins, windows, scale = origins[whole], windows[whole], scale[whole]
        for h in range(horizon):
            live = origins + h < length
            if not live.any():
                break
            origins, windows, scale = origins[live], windows[live], scale[live]
            target = origins + h
            forecast = ridge_features(windows, None if history is None else history[target][:, :k]) @ weights
            truth = x[target]
            scored = ~np.isnan(truth) & (scale > 0)
            total += float((np.abs(forecast - np.nan_to_num(truth))[scored] / scale[scored]).sum())
            count += int(scored.sum())
            windows = np.concatenate([windows[:, 1:], forecast[:, None]], axis=1)
    return total / count if count else np.inf


def ridge_sub_block(j: int, k: int, d: int, c: int) -> np.ndarray:
    """Where the features of the ridge on the last j vectors sit among those of the ridge on the last k >= j (see
    `ridge_features`: the k vectors most recent first, then the k condition vectors, then the intercept)."""
    return np.concatenate([np.arange(j * d), k * d + np.arange(j * c), [k * (d + c)]])


def _solve_ridge(gram: np.ndarray, cross: np.ndarray, ridge_lambda: float) -> np.ndarray:
    """Ridge weights from the normal equations, the penalty on standardised features: `ridge_lambda` times the
    number of transitions (the intercept's diagonal entry counts them) times each feature's variance, so that it
    does not depend on the data's units; the intercept is not shrunk."""
    n = gram[-1, -1]
    variance = _variances(np.diag(gram)[:-1], gram[:-1, -1], n)
    penalty = np.diag(np.append(ridge_lambda * n * variance, 0.0))
    return np.linalg.solve(gram + penalty, cross)


def _variances(squares: np.ndarray, sums: np.ndarray, n: float) -> np.ndarray:
    """Each feature's variance over n transitions from its sum of squares and its sum, the weight of its penalty;
    one that (next to the largest) does not vary counts 1."""
    variance = np.maximum(squares / n - (sums / n) ** 2, 0.0)
    return np.where(variance > 1e-12 * max(variance.max(initial=0.0), 1e-300), variance, 1.0)


def _solve_increments(gram: np.ndarray, cross: np.ndarray, ridge_lambda: float, j: int, d: int, c: int) -> np.ndarray:
    """The ridge weights `[j*d + j*c + 1, d]` (the layout of `ridge_features`) of the forecast x_t + A (x_t - x_{t-1},
    .., x_{t-j+2} - x_{t-j+1}) + B (the last j conditions), without an intercept: exactly x_t on a history that holds
    still (and conditions at 0). Solved from the level features' normal equations (`gram`, `cross`) by the linear map
    from those features to the steps, the penalty as `_solve_ridge`'s on the standardised steps."""
    width = j * (d + c) + 1
    last = np.zeros((d, width))  # picks x_t, the first block
    last[:, :d] = np.eye(d)
    rows = []
    for i in range(j - 1):  # step i: x_{t-i} - x_{t-i-1}
        step = np.zeros((d, width))
        step[:, i * d:(i + 1) * d] = np.eye(d)
        step[:, (i + 1) * d:(i + 2) * d] = -np.eye(d)
        rows.append(step)
    if c:
        condition = np.zeros((j * c, width))
        condition[:, j * d:j * d + j * c] = np.eye(j * c)
        rows.append(condition)
    if not rows:  # one vector and no conditions: persistence
        return last.T.copy()
    to_steps = np.concatenate(rows)
    n = gram[-1, -1]
    step_gram = to_steps @ gram @ to_steps.T
    step_cross = to_steps @ cross - to_steps @ gram @ last.T  # the target is the step from x_t
    variance = _variances(np.diag(step_gram), to_steps @ gram[:, -1], n)
    steps = np.linalg.solve(step_gram + np.diag(ridge_lambda * n * variance), step_cross)
    return last.T + to_steps.T @ steps


def _safe(scale: np.ndarray) -> np.ndarray:
    """A dimension that never varies keeps scale 1 rather than dividing by zero."""
    return np.where(scale > 1e-12, scale, 1.0)
