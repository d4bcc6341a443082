"""Normalisation, residual prediction, the ridge baseline and the extra loss types, against values computed here."""

import numpy as np
import pytest
import torch

from conftest import tiny_world_model
from wmfactory.model.loss import embedding_errors
from wmfactory.model.statistics import EmbeddingStatistics, ridge_features


def streams(seed=0, rows=50, steps=6, d=3):
    rng = np.random.default_rng(seed)
    a = np.array([[0.9, -0.2, 0.0], [0.2, 0.9, 0.0], [0.0, 0.0, 0.5]])[:d, :d]
    out = []
    for _ in range(rows):
        x = rng.normal(size=d) * np.array([1.0, 5.0, 0.1])[:d] + np.array([2.0, -1.0, 0.0])[:d]
        stream = []
        for _ in range(steps):
            stream.append(x.copy())
            x = a @ x
        out.append(np.asarray(stream, dtype=np.float32))
    return out, a


def test_standard_normalisation_and_step_scale():
    rows, _ = streams()
    stats = EmbeddingStatistics(3)
    stats.fit(rows, "standard")
    everything = np.concatenate(rows).astype(np.float64)
    np.testing.assert_allclose(stats.center.numpy(), everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.scale.numpy(), everything.std(0), rtol=1e-4)
    z = (everything - everything.mean(0)) / everything.std(0)
    steps = np.concatenate([np.diff((r - everything.mean(0)) / everything.std(0), axis=0) for r in rows])
    np.testing.assert_allclose(stats.delta_scale.numpy(), steps.std(0), rtol=1e-4)
    x = torch.from_numpy(rows[0])
    np.testing.assert_allclose(stats.normalize(x).numpy(), z[:6], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stats.denormalize(stats.normalize(x)), x, rtol=1e-5, atol=1e-5)


def test_robust_normalisation_uses_median_iqr_and_clips_outliers():
    values = np.arange(1, 1001, dtype=np.float32)[:, None].repeat(2, axis=1)
    values[0] = [1e6, -1e6]  # one extreme vector
    stats = EmbeddingStatistics(2)
    stats.fit([values], "robust")
    low, high = np.quantile(values, (0.001, 0.999), axis=0)
    clipped = np.clip(values, low, high)
    q1, median, q3 = np.quantile(clipped, (0.25, 0.5, 0.75), axis=0)
    np.testing.assert_allclose(stats.center.numpy(), median, rtol=1e-6)
    np.testing.assert_allclose(stats.scale.numpy(), 0.7413 * (q3 - q1), rtol=1e-6)
    z = stats.normalize(torch.tensor([[1e6, -1e6]]))  # clipped to the quantiles, not millions of units away
    np.testing.assert_allclose(z.numpy()[0], (np.array([high[0], low[1]]) - median) / (0.7413 * (q3 - q1)),
                               rtol=1e-5)


def test_ridge_recovers_a_linear_map():
    rows, a = streams(rows=200)
    stats = EmbeddingStatistics(3, ridge_history=1)
    stats.fit(rows, "none", ridge_lambda=1e-9)
    history = rows[0][:-1, None, :]  # [n, k=1, d]
    forecast = ridge_features(history) @ stats.ridge.double().numpy()
    np.testing.assert_allclose(forecast, rows[0][1:], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(stats.ridge.numpy()[:3], a.T, atol=1e-4)


def penalised_fit(x, y, penalty):
    """Ridge by hand: the penalty times the number of rows times each feature's variance, the intercept (last
    column) not shrunk."""
    return np.linalg.solve(x.T @ x + np.diag(np.append(penalty * len(x) * x[:, :-1].var(axis=0), 0.0)), x.T @ y)


def windows_of(rows, j, start):
    """Features (the last j vectors, most recent first, then 1) and targets of every transition from index start."""
    x = [np.append(r[t - j:t][::-1].ravel(), 1.0) for r in rows for t in range(start, len(r))]
    return np.array(x, dtype=np.float64), np.concatenate([r[start:] for r in rows]).astype(np.float64)


@pytest.mark.parametrize("noise", [0.0, 2.0])
def test_ridge_history_and_penalty_are_chosen_on_every_fifth_row(noise):
    """An AR(2) oscillator: without noise the last two vectors forecast it; drowned in noise, fewer parameters do
    better. The choice must be the one that a search by hand over histories and penalties makes on held-out rows 4,
    9, 14, .. (every transition with 3 vectors before it scored), and the weights its refit on all rows, stored on
    3 vectors with zeros on the older ones."""
    from wmfactory.model.statistics import PENALTIES

    rng = np.random.default_rng(1)
    rows = []
    for _ in range(40):
        x = [rng.normal(size=2), rng.normal(size=2)]
        for _ in range(10):
            x.append(1.6 * x[-1] - 0.9 * x[-2] + noise * rng.normal(size=2))
        rows.append(np.asarray(x, dtype=np.float32))
    stats = EmbeddingStatistics(2, ridge_history=3, shorter_ridges=True)
    stats.fit(rows, "standard", select=True)
    held = [r for i, r in enumerate(rows) if i % 5 == 4]
    kept = [r for i, r in enumerate(rows) if i % 5 != 4]
    scores = {}
    for j in (1, 2, 3):
        x, y = windows_of(kept, j, j)
        hx, hy = windows_of(held, j, 3)
        for penalty in PENALTIES:
            scores[j, penalty] = ((hx @ penalised_fit(x, y, penalty) - hy) ** 2).sum()
    # scanned from the simplest (history 1, the largest penalty): a candidate is chosen only when better by more
    # than 1e-9 of the held-out targets' squares
    tie = 1e-9 * sum((r[3:].astype(np.float64) ** 2).sum() for r in held)
    best = np.inf
    for j in (1, 2, 3):
        for p in sorted(PENALTIES, reverse=True):
            if scores[j, p] < best - tie:
                best, history, penalty = scores[j, p], j, p
    assert stats.choice == {"history": history, "penalty": penalty}
    if noise == 0:
        assert history >= 2  # an AR(2) needs two vectors
    weights = penalised_fit(*windows_of(rows, history, history), penalty)
    stored = stats.ridge.double().numpy()
    np.testing.assert_allclose(stored[: 2 * history], weights[:-1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stored[-1], weights[-1], rtol=1e-4, atol=1e-6)
    assert not stored[2 * history: -1].any()
    for j in (1, 2):  # the shorter ridges: their own fit up to the chosen history, the chosen one beyond it
        expected = penalised_fit(*windows_of(rows, min(j, history), min(j, history)), penalty)
        np.testing.assert_allclose(stats.ridge_on(j).double().numpy()[: 2 * min(j, history)], expected[:-1],
                                   rtol=1e-4, atol=1e-6)


def test_zero_head_output_with_predict_residual_is_persistence():
    model = tiny_world_model(embedding_dim=3, predict_residual=True,
                                                 embedding_norm="standard")
    rows, _ = streams()
    model.statistics.m.fit(rows, "standard")
    torch.nn.init.zeros_(model.prediction_head.m.net[2].weight)
    torch.nn.init.zeros_(model.prediction_head.m.net[2].bias)
    previous = torch.from_numpy(rows[0][:4])
    hidden = torch.randn(4, 64)
    _, predicted = model.vectors_from_hidden(hidden, previous, torch.tensor([True, True, True, False]))
    torch.testing.assert_close(predicted[:3], previous[:3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(predicted[3], model.statistics.m.center)  # no previous: the training center


def test_smooth_l1_and_cosine_by_hand():
    predicted = torch.tensor([[0.5, 3.0], [1.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    # smooth_l1: |0.5| < 1 -> 0.5 * 0.25 = 0.125; |3| -> 2.5; mean 1.3125. |1| -> 0.5; |2| -> 1.5; mean 1.0
    torch.testing.assert_close(embedding_errors(predicted, target, "smooth_l1"), torch.tensor([1.3125, 1.0]))
    # cosine: [1, 0] vs [0, 2] are orthogonal -> 1 - 0 = 1; [0.5, 3] vs [0, 0] -> similarity 0 (eps) -> 1
    torch.testing.assert_close(embedding_errors(predicted, target, "cosine"), torch.tensor([1.0, 1.0]))
    same = embedding_errors(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 4.0]]), "cosine")
    torch.testing.assert_close(same, torch.tensor([0.0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("option", [{"scheduled_sampling_prob": 1.0}, {"embedding_noise_std": 0.5}])
def test_training_only_input_perturbations(option):
    # the persistence frame: the ridge frame's zeroed last layer would hide any input from the first step's loss
    model = tiny_world_model(embedding_dim=3, predict_residual=True, **option)
    batch = {
        "input_ids": torch.tensor([[5, 2, 2, 2, 9, 9]]),
        "embedding_vectors": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        "embedding_positions": torch.tensor([[0, 1], [0, 2], [0, 3]]),
        "embedding_is_target": torch.tensor([False, True, True]),
    }
    model.eval()
    first, second = model(**batch).embedding_loss, model(**batch).embedding_loss
    assert first == second  # evaluation never perturbs
    model.train()
    torch.manual_seed(0)
    perturbed = model(**batch).embedding_loss
    assert perturbed != first and torch.isfinite(perturbed)


def test_baseline_error_spreads_match_a_direct_computation():
    rng = np.random.default_rng(5)
    rows = [np.cumsum(rng.normal(size=(7, 3)), axis=0).astype(np.float32) for _ in range(40)]
    stats = EmbeddingStatistics(3, ridge_history=2)
    stats.fit(rows, "standard")
    steps = np.concatenate([np.diff(r.astype(np.float64), axis=0) for r in rows])
    np.testing.assert_allclose(stats.step_std.numpy(), np.sqrt((steps**2).mean(0)), rtol=1e-5)
    ridge = stats.ridge.double().numpy()
    errors = np.concatenate([ridge_features(np.stack([r[j: len(r) - 2 + j] for j in range(2)], axis=1)) @ ridge
                             - r[2:] for r in rows])
    np.testing.assert_allclose(stats.ridge_residual_std.numpy(), np.sqrt((errors**2).mean(0)), rtol=1e-4)


def test_the_increments_frame_is_the_last_vector_plus_a_ridge_on_its_steps():
    """`frame_form: increments`: the frame's ridge on the last 3 vectors is x_t + A (x_t - x_{t-1}, x_{t-1} - x_{t-2}),
    no intercept, by hand from the steps; exactly the last vector on a still history; eval's ridge stays on levels."""
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(40):  # a walk whose steps carry on: x_{t+1} - x_t = 0.6 (x_t - x_{t-1}) + noise
        x, step, row = rng.normal(size=3) + 4.0, rng.normal(size=3), []
        for _ in range(12):
            row.append(x.copy())
            step = 0.6 * step + rng.normal(scale=0.3, size=3)
            x = x + step
        rows.append(np.asarray(row, dtype=np.float32))
    stats = EmbeddingStatistics(3, ridge_history=3, shorter_ridges=True, frame_form="increments")
    stats.fit(rows, "standard", ridge_lambda=1e-2)
    levels = EmbeddingStatistics(3, ridge_history=3, shorter_ridges=True)
    levels.fit(rows, "standard", ridge_lambda=1e-2)
    np.testing.assert_array_equal(stats.ridge.numpy(), levels.ridge.numpy())  # eval's baseline is unchanged
    # by hand: the target x_{t+1} - x_t on the steps (x_t - x_{t-1}, x_{t-1} - x_{t-2}), penalty 1e-2 times the
    # transitions times each step's variance, no intercept
    steps, targets = [], []
    for r in rows:
        r = r.astype(np.float64)
        for t in range(3, len(r)):
            steps.append(np.r_[r[t - 1] - r[t - 2], r[t - 2] - r[t - 3]])
            targets.append(r[t] - r[t - 1])
    steps, targets = np.array(steps), np.array(targets)
    a = np.linalg.solve(steps.T @ steps + np.diag(1e-2 * len(steps) * steps.var(axis=0)), steps.T @ targets)
    window = rows[5][4:7].astype(np.float64)  # [x_{t-2}, x_{t-1}, x_t]
    expected = window[-1] + np.r_[window[2] - window[1], window[1] - window[0]] @ a
    forecast = ridge_features(window[None]) @ stats.frame_ridge_on(3).double().numpy()
    np.testing.assert_allclose(forecast[0], expected, rtol=1e-5, atol=1e-5)
    assert np.abs(forecast[0] - ridge_features(window[None])[0] @ levels.ridge.double().numpy()).max() > 1e-3
    # exact but for the float32 weights: 1e-6 of the largest entry (the ridge on levels misses by more than 1)
    still = np.repeat(np.array([[4.25, -3.5, 1e3]]), 3, axis=0)
    for j in (1, 2, 3):
        np.testing.assert_allclose(ridge_features(still[None, :j]) @ stats.frame_ridge_on(j).double().numpy(),
                                   still[:1], rtol=0, atol=1e-6 * 1e3)
    assert np.abs(ridge_features(still[None])[0] @ levels.ridge.double().numpy() - still[0]).max() > 1
    np.testing.assert_array_equal(stats.frame_ridge_on(1).numpy(), np.r_[np.eye(3), np.zeros((1, 3))])


def _still_and_moving_rows(rng, rows=40, steps=16):
    """Every other row holds still (an appliance that is off: 0 up to 1e-6), the others move around a level of 3
    (on), as the quality suite's appliance power does."""
    out = []
    for row in range(rows):
        still = rng.normal(scale=1e-6, size=(steps, 2))
        out.append((still if row % 2 == 0 else 3 + rng.normal(scale=0.5, size=(steps, 2))).astype(np.float32))
    return out


def _mean_reverting_rows(rng, rows=40, steps=16):
    """An AR(1) around a mean of 3: x_{t+1} - 3 = 0.5 (x_t - 3) + noise, which a ridge with an intercept forecasts."""
    out = []
    for _ in range(rows):
        x, row = rng.normal(size=2) * 2 + 3, []
        for _ in range(steps):
            row.append(x.copy())
            x = 3 + 0.5 * (x - 3) + rng.normal(scale=0.5, size=2)
        out.append(np.asarray(row, dtype=np.float32))
    return out


def _bounded_nonlinear_rows(rng, rows=128, steps=6):
    """x_{t+1} = 1.5 A tanh(2 x_t), A a rotation (as tests/e2e/test_default_frame_learns.py): the increments frame's
    rollouts score better than the level frame's, but not by half."""
    from conftest import rotation_matrix

    a, x = rotation_matrix(2, seed=3), rng.uniform(-1.5, 1.5, size=(rows, 2))
    out = [x]
    for _ in range(steps - 1):
        x = 1.5 * np.tanh(2 * x) @ a.T
        out.append(x)
    return list(np.stack(out, axis=1).astype(np.float32))


@pytest.mark.parametrize("make, form", [(_still_and_moving_rows, "increments"), (_mean_reverting_rows, "levels"),
                                        (_bounded_nonlinear_rows, "levels")])
def test_frame_form_auto_keeps_increments_where_their_scale_free_rollout_error_is_half_the_levels(make, form):
    """`frame_form: auto`: both forms are fitted; increments are kept where their `_scale_free_error` on the held-out
    rows (every fifth) is at most `FORM_MARGIN` (half) of the levels', and the kept weights are those of that form
    fitted alone; eval's ridge is on levels either way."""
    from wmfactory.model.statistics import FORM_MARGIN, HOLD_OUT_EVERY, _scale_free_error, _widen

    rows = make(np.random.default_rng(1 if make is _bounded_nonlinear_rows else 5))
    auto = EmbeddingStatistics(2, ridge_history=3, shorter_ridges=True, frame_form="auto")
    auto.fit(rows, "standard", select=True)
    assert auto.choice["frame_form"] == form
    fitted = {}
    for name in ("levels", "increments"):
        alone = EmbeddingStatistics(2, ridge_history=3, shorter_ridges=True, frame_form=name)
        alone.fit(rows, "standard", select=True)
        fitted[name] = alone
    np.testing.assert_array_equal(auto.frame_ridge_on(3).numpy(), fitted[form].frame_ridge_on(3).numpy())
    np.testing.assert_array_equal(auto.ridge.numpy(), fitted["levels"].ridge.numpy())
    ratio = auto.choice["frame_score_increments"] / auto.choice["frame_score_levels"]
    assert ratio <= FORM_MARGIN if form == "increments" else ratio > FORM_MARGIN
    if make is _bounded_nonlinear_rows:
        assert ratio < 1  # smaller, but not by the margin: levels are kept
    # the scores are of the ridges fitted without the held-out rows: refit those by hand on the other rows
    held = [r.astype(np.float64) for i, r in enumerate(rows) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    kept = [r for i, r in enumerate(rows) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    history = auto.choice["frame_history"]
    alone = EmbeddingStatistics(2, ridge_history=history, frame_form=form)
    alone.fit(kept, "standard", ridge_lambda=auto.choice["frame_penalty"])
    w = _widen(alone.frame_ridge_on(history).double().numpy(), history, 3, 2, 0)
    score = _scale_free_error(w, [(r, None, np.ones(len(r), bool)) for r in held], 3, 2, 0)
    np.testing.assert_allclose(auto.choice[f"frame_score_{form}"], score, rtol=1e-4)


def test_the_scale_free_error_is_mase_of_rollouts_by_hand():
    """`_scale_free_error` of persistence (the ridge on the last vector: identity, no intercept) and of a ridge that
    adds 1: every `horizon`-th origin, fed-back forecasts, each cell's absolute error over the row's mean absolute step
    before the origin; a missing truth is not scored, nor a cell whose scale is 0."""
    from wmfactory.model.statistics import _scale_free_error

    x = np.array([[0.0, 5.0], [1.0, 5.0], [3.0, 5.0], [2.0, 5.0], [6.0, 5.0], [np.nan, 5.0], [4.0, 5.0]])
    persistence = np.r_[np.eye(2), np.zeros((1, 2))]
    plus_one = np.r_[np.eye(2), np.ones((1, 2))]
    for weights, offset in ((persistence, 0.0), (plus_one, 1.0)):
        by_hand = []
        for origin in (2, 5):  # horizon 3 from the first target with a step before it (index 2)
            scale = np.abs(np.diff(x[:origin, 0])).mean()  # dimension 1 never moves: scale 0, not scored
            last = x[origin - 1, 0]
            for h in range(3):
                t = origin + h
                if t < len(x) and not np.isnan(x[t, 0]):
                    by_hand.append(abs(last + offset * (h + 1) - x[t, 0]) / scale)
        score = _scale_free_error(weights, [(x, None, np.ones(len(x), bool))], 1, 2, 0, horizon=3)
        np.testing.assert_allclose(score, np.mean(by_hand), rtol=1e-12)
