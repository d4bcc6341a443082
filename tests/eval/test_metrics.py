import numpy as np
import pytest

from conftest import distribution_scores

from wmfactory.eval.metrics import baseline_forecasts, forecast_metrics, ridge_path


def test_metrics_by_hand():
    predicted = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    target = np.array([[1.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    rows = np.array([0, 1, 2])
    m = forecast_metrics(predicted, target, rows)
    assert m["mse"] == pytest.approx((1 + 0 + 9) / 6)
    assert m["mae"] == pytest.approx((1 + 0 + 3) / 6)
    assert m["l2"] == pytest.approx((1 + 0 + 3) / 3)
    # cosines: [1,0]·[1,1] = 1/sqrt(2); identical = 1; [3,3]·[0,3] = 9 / (sqrt(18) * 3) = 1/sqrt(2)
    assert m["cosine"] == pytest.approx((1 / np.sqrt(2) + 1 + 1 / np.sqrt(2)) / 3)
    # row 0: own distance 1; to [0,2] sqrt(5) and [0,3] sqrt(10): both farther -> 1
    # row 1: own 0; others sqrt(2), 1 farther -> 1
    # row 2: own 3; to [1,1] sqrt(8) < 3 (closer), to [0,2] sqrt(10) > 3 -> 1/2
    assert m["contrastive_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    # vectors of one row are not compared with each other
    assert forecast_metrics(predicted, target, np.array([0, 0, 0]))["contrastive_accuracy"] is None


def test_baselines():
    stream = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]])
    mean = np.array([5.0, 5.0])
    # ridge with history 2: next = 0.5 * x[t-1] + 0.25 * x[t-2] + [1, 0] (rows: x[t-1], x[t-2], bias)
    ridge = np.concatenate([0.5 * np.eye(2), 0.25 * np.eye(2), [[1.0, 0.0]]])
    one_step = baseline_forecasts(stream, origin=2, index=3, mean=mean, ridge=ridge, history=2)
    np.testing.assert_array_equal(one_step["persistence"], [3.0, 3.0])
    np.testing.assert_array_equal(one_step["linear_extrapolation"], [5.0, 4.0])  # 2 x[t-1] - x[t-2]
    np.testing.assert_array_equal(one_step["training_mean"], mean)
    np.testing.assert_allclose(one_step["ridge"], [0.5 * 3 + 0.25 * 1 + 1, 0.5 * 3 + 0.25 * 2])
    three_steps = baseline_forecasts(stream, origin=2, index=5, mean=mean, ridge=ridge, history=2)
    np.testing.assert_array_equal(three_steps["linear_extrapolation"], [3.0 + 3 * 2.0, 3.0 + 3 * 1.0])
    # the ridge rolls forward on its own forecasts
    x3 = np.array([2.75, 2.0])
    x4 = 0.5 * x3 + 0.25 * np.array([3.0, 3.0]) + [1.0, 0.0]
    x5 = 0.5 * x4 + 0.25 * x3 + [1.0, 0.0]
    np.testing.assert_allclose(ridge_path(ridge, stream[1:3], 3), [x3, x4, x5])
    np.testing.assert_allclose(three_steps["ridge"], x5)


def test_proper_scores_of_samples_by_hand():

    samples = np.array([[[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]])  # one vector, 3 samples, d = 2
    target = np.array([[1.0, 1.0]])
    # CRPS, dimension 0: E|X - 1| = (1 + 0 + 1) / 3; pairs |0-1|, |0-2|, |1-2| twice each over 3 * 2 -> 8 / 6
    crps0 = 2 / 3 - (8 / 6) / 2
    crps1 = (1 + 1 + 3) / 3 - (2 * (2 + 4 + 2) / 6) / 2  # dimension 1: values 0, 2, 4 against 1
    norms_to_target = [np.hypot(1, 1), np.hypot(0, 1), np.hypot(1, 3)]
    pair_norms = [np.hypot(1, 2), np.hypot(2, 4), np.hypot(1, 2)]  # (0,1), (0,2), (1,2)
    energy = np.mean(norms_to_target) - (2 * sum(pair_norms) / 6) / 2
    result = distribution_scores(samples, target)
    assert result["crps"] == pytest.approx((crps0 + crps1) / 2)
    assert result["energy_score"] == pytest.approx(energy)
    # identical samples: the spread term vanishes and CRPS is the MAE
    point = distribution_scores(np.repeat(np.array([[[0.5, 3.0]]]), 4, axis=1), target)
    assert point["crps"] == pytest.approx((0.5 + 2.0) / 2)
    # coverage: in both dimensions one of 3 samples lies below 1, so its randomised PIT is uniform on [1/4, 2/4],
    # inside the central 50% [1/4, 3/4]; and 80% of it inside the central 90% [0.05, 0.95] (by hand: 0.2 / 0.25)
    assert result["coverage_50"] == 1.0 and sum(result["pit"]) == pytest.approx(1.0)
    low = distribution_scores(np.array([[[2.0], [3.0], [4.0]]]), np.array([[1.0]]))  # no sample below: [0, 1/4]
    assert low["coverage_90"] == pytest.approx(0.8) and low["coverage_50"] == 0.0


def test_coverage_of_a_calibrated_forecast_is_nominal_whatever_the_number_of_samples():
    rng = np.random.default_rng(0)
    for s in (4, 32):
        samples, target = rng.normal(size=(4000, s, 2)), rng.normal(size=(4000, 2))  # the same distribution
        result = distribution_scores(samples, target)
        assert result["coverage_50"] == pytest.approx(0.5, abs=0.02)
        assert result["coverage_90"] == pytest.approx(0.9, abs=0.015)
    # the interval between sample quantiles would hold fewer: (S - 1) * 0.9 / (S + 1) on average
    low, high = np.quantile(samples, [0.05, 0.95], axis=1)
    assert ((target >= low) & (target <= high)).mean() == pytest.approx(31 * 0.9 / 33, abs=0.015)


def direct_forecast_metrics(predicted, target, rows):
    """Every pair at once, as a small computation does it: the [n, n, d] differences."""
    p, t = predicted.astype(np.float64), target.astype(np.float64)
    own = np.linalg.norm(p - t, axis=1)
    distances = np.linalg.norm(p[:, None, :] - t[None, :, :], axis=2)
    others = rows[:, None] != rows[None, :]
    keep = others.sum(1) > 0
    shares = ((distances > own[:, None]) & others).sum(1)[keep] / others.sum(1)[keep]
    cosine = np.sum(p * t, 1) / np.maximum(np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1), 1e-12)
    return {"mse": np.mean((p - t) ** 2), "mae": np.mean(np.abs(p - t)), "cosine": np.mean(cosine),
            "l2": np.mean(own), "contrastive_accuracy": np.mean(shares)}


def direct_distribution_metrics(samples, target):
    """Every sample pair of every vector at once: the [n, S, S, d] differences."""
    x, y = samples.astype(np.float64), target.astype(np.float64)
    s = x.shape[1]
    pairs = x[:, :, None] - x[:, None, :]
    crps = np.abs(x - y[:, None]).mean(1) - np.abs(pairs).sum((1, 2)) / (2 * s * (s - 1))
    energy = np.linalg.norm(x - y[:, None], axis=-1).mean(1) - np.linalg.norm(pairs, axis=-1).sum((1, 2)) / (
        2 * s * (s - 1))
    result = {"crps": crps.mean(), "energy_score": energy.mean()}
    # coverage from the randomised PIT (r + U) / (S + 1), r samples below the value: averaged over U on a fine grid
    below = (x < y[:, None]).sum(1)[..., None]
    jitter = (np.arange(4000) + 0.5) / 4000
    pit = (below + jitter) / (s + 1)
    for level, (low, high) in ((50, (0.25, 0.75)), (90, (0.05, 0.95))):
        result[f"coverage_{level}"] = ((pit >= low) & (pit <= high)).mean()
    shares = (x < y[:, None]).mean(1).ravel()
    result["pit"] = np.histogram(shares, bins=10, range=(0, 1))[0] / shares.size
    return result


def test_block_by_block_equals_the_direct_computation(monkeypatch):
    from wmfactory.eval import metrics

    rng = np.random.default_rng(1)
    n, d = 203, 9
    target = rng.normal(size=(n, d)).astype(np.float32)
    predicted = (target + 0.7 * rng.normal(size=(n, d))).astype(np.float32)
    # exact ties, which the Gram form alone could count either way: a target repeated in another row, a
    # prediction equal to another row's target, and a constant prediction (the training mean)
    target[11] = target[4]
    predicted[20], predicted[21] = target[40], target[21]
    rows = rng.integers(0, 60, size=n)
    # far from the origin too, where the Gram form loses digits
    cases = [(predicted, target), (np.repeat(target[:1], n, axis=0), target), (1e3 + predicted, 1e3 + target)]
    for forecast, truth in cases:
        expected = direct_forecast_metrics(forecast, truth, rows)
        for block in (1, 16, 64, 1024):
            got = metrics.forecast_metrics(forecast, truth, rows, block=block)
            for name, value in expected.items():
                assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, block)
    samples = (target[:, None] + rng.normal(size=(n, 5, d))).astype(np.float32)
    samples[3] = samples[3, :1]  # identical samples: no spread
    expected = direct_distribution_metrics(samples, target)
    for block_bytes in (8 * 5 * d, 8 * 5 * d * 17, metrics.BLOCK_BYTES):  # 1 vector per block, 17, all at once
        monkeypatch.setattr(metrics, "BLOCK_BYTES", block_bytes)
        got = distribution_scores(samples, target)
        for name in ("crps", "energy_score"):
            assert got[name] == pytest.approx(expected[name], rel=1e-9), (name, block_bytes)
        for name in ("coverage_50", "coverage_90"):  # the grid of the direct computation: 1 / 4000 of each range
            assert got[name] == pytest.approx(expected[name], abs=1e-3), (name, block_bytes)
        np.testing.assert_allclose(got["pit"], expected["pit"], rtol=1e-12)
        # vectors given one at a time, in two parts merged, score the same
        first, second = metrics.DistributionScores(), metrics.DistributionScores()
        for i in range(n):
            (first if i < 70 else second).add(samples[i], target[i])
        first.merge(second)
        assert first.result()["energy_score"] == pytest.approx(expected["energy_score"], rel=1e-9)
        assert first.result()["pit"] == pytest.approx(got["pit"], abs=1e-15)
