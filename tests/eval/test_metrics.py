import numpy as np
import pytest

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
    from wmfactory.eval.metrics import distribution_metrics

    samples = np.array([[[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]])  # one vector, 3 samples, d = 2
    target = np.array([[1.0, 1.0]])
    # CRPS, dimension 0: E|X - 1| = (1 + 0 + 1) / 3; pairs |0-1|, |0-2|, |1-2| twice each over 3 * 2 -> 8 / 6
    crps0 = 2 / 3 - (8 / 6) / 2
    crps1 = (1 + 1 + 3) / 3 - (2 * (2 + 4 + 2) / 6) / 2  # dimension 1: values 0, 2, 4 against 1
    norms_to_target = [np.hypot(1, 1), np.hypot(0, 1), np.hypot(1, 3)]
    pair_norms = [np.hypot(1, 2), np.hypot(2, 4), np.hypot(1, 2)]  # (0,1), (0,2), (1,2)
    energy = np.mean(norms_to_target) - (2 * sum(pair_norms) / 6) / 2
    result = distribution_metrics(samples, target)
    assert result["crps"] == pytest.approx((crps0 + crps1) / 2)
    assert result["energy_score"] == pytest.approx(energy)
    # identical samples: the spread term vanishes and CRPS is the MAE
    point = distribution_metrics(np.repeat(np.array([[[0.5, 3.0]]]), 4, axis=1), target)
    assert point["crps"] == pytest.approx((0.5 + 2.0) / 2)
    # coverage: 1 lies inside the central 50% interval of 0, 1, 2 ([0.5, 1.5]) and of 0, 2, 4 ([1, 3]) too
    assert result["coverage_50"] == 1.0 and sum(result["pit"]) == pytest.approx(1.0)
