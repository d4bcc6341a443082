import numpy as np
import pytest

from wmfactory.eval.metrics import baseline_forecasts, forecast_metrics


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
    one_step = baseline_forecasts(stream, origin=2, index=3, mean=mean)
    np.testing.assert_array_equal(one_step["persistence"], [3.0, 3.0])
    np.testing.assert_array_equal(one_step["linear_extrapolation"], [5.0, 4.0])  # 2 x[t-1] - x[t-2]
    np.testing.assert_array_equal(one_step["training_mean"], mean)
    three_steps = baseline_forecasts(stream, origin=2, index=5, mean=mean)
    np.testing.assert_array_equal(three_steps["linear_extrapolation"], [3.0 + 3 * 2.0, 3.0 + 3 * 1.0])
