"""The forecasters' scale-free scores, by hand: seasonal naive, MASE (scaled by the in-sample seasonal naive error),
the weighted quantile loss of samples, and every score relative to seasonal naive."""

import numpy as np
import pytest

from conftest import distribution_scores

from wmfactory.eval.metrics import BASELINES, baseline_forecasts, seasonal_scale
from wmfactory.eval.report import _Pool, format_report


def test_seasonal_naive_repeats_the_last_known_season():
    stream = np.arange(12, dtype=float).reshape(6, 2)  # x[t] = [2t, 2t + 1]
    ridge = np.zeros((3, 2))
    mean = np.zeros(2)
    for index, source in ((5, 2), (6, 3), (7, 4), (8, 2), (9, 3)):  # origin 4, m = 3: x[i - 3j], j smallest
        forecast = baseline_forecasts(stream, 4, index, mean, ridge, 1, seasonality=3)["seasonal_naive"]
        np.testing.assert_array_equal(forecast, stream[source])
    one = baseline_forecasts(stream, 4, 7, mean, ridge, 1)
    np.testing.assert_array_equal(one["seasonal_naive"], one["persistence"])  # m = 1 is persistence


def test_mase_scale_is_the_in_sample_seasonal_naive_error():
    stream = np.array([[0.0, 0.0], [1.0, -2.0], [3.0, -2.0], [6.0, 1.0], [100.0, 100.0]])
    # known at origin 3, per dimension: differences 1, 2, 3 -> 2; -2, 0, 3 -> 5 / 3
    np.testing.assert_allclose(seasonal_scale(stream, 3), [2.0, 5 / 3])
    # m = 2: x2 - x0 = (3, -2), x3 - x1 = (5, 3) -> (4, 2.5)
    np.testing.assert_allclose(seasonal_scale(stream, 3, seasonality=2), [4.0, 2.5])
    assert np.isnan(seasonal_scale(stream, 1, seasonality=2)).all()  # fewer than m + 1 known


def test_weighted_quantile_loss_by_hand():
    samples = np.array([[[0.0], [1.0], [2.0], [3.0]]])  # one vector, 4 samples, d = 1
    target = np.array([[2.5]])
    # median 1.5: pinball 0.5 * 1.0; WQL = 2 * 0.5 / |2.5|
    assert distribution_scores(samples, target, [0.5])["wql"] == pytest.approx(0.4)
    # q0.1 = 0.3, q0.9 = 2.7: pinball 0.1 * 2.2 + (0.9 - 1) * (2.5 - 2.7); 2 * 0.24 / (2 levels * 2.5)
    assert distribution_scores(samples, target, [0.1, 0.9])["wql"] == pytest.approx(0.096)
    # two vectors, the second on the target: the loss adds 0, the weight |y| adds 2
    two = distribution_scores(np.concatenate([samples, np.full((1, 4, 1), -2.0)]), np.array([[2.5], [-2.0]]),
                               [0.5])
    assert two["wql"] == pytest.approx(2 * 0.5 / 4.5)


def test_mase_and_scores_relative_to_seasonal_naive_by_hand():
    pool = _Pool(quantile_levels=(0.5,))
    targets = [np.array([1.0, 3.0]), np.array([2.0, -2.0])]
    scales = [np.array([2.0, 4.0]), np.array([0.5, 0.5])]
    errors = {"model": [0.5, 0.25], "seasonal_naive": [1.0, 1.0]}  # added to every dimension
    rng = np.random.default_rng(0)
    for row, (target, scale) in enumerate(zip(targets, scales)):
        baselines = {name: target + 3.0 for name in BASELINES}
        baselines["seasonal_naive"] = target + errors["seasonal_naive"][row]
        model = target + errors["model"][row]
        draws = {name: value + rng.normal(size=(5, 2)) * 0.1 for name, value in [("model", model), *baselines.items()]}
        pool.add(row, target, model, baselines, draws, scale=scale)
    result = pool.score()
    assert result["mase_values"] == 4
    model_mase = (0.5 / 2.0 + 0.5 / 4.0 + 0.25 / 0.5 + 0.25 / 0.5) / 4
    naive_mase = (1.0 / 2.0 + 1.0 / 4.0 + 1.0 / 0.5 + 1.0 / 0.5) / 4
    assert result["model"]["mase"] == pytest.approx(model_mase)
    assert result["seasonal_naive"]["mase"] == pytest.approx(naive_mase)
    relative = result["model"]["relative_to_seasonal_naive"]
    assert relative["mase"] == pytest.approx(model_mase / naive_mase)
    assert relative["mse"] == pytest.approx(((0.25 + 0.0625) / 2) / 1.0)
    assert relative["wql"] == pytest.approx(result["model"]["wql"] / result["seasonal_naive"]["wql"])
    assert result["seasonal_naive"]["relative_to_seasonal_naive"] == {"mse": 1.0, "mase": 1.0, "crps": 1.0,
                                                                      "wql": 1.0}
    text = format_report({"seasonality": 4, "teacher_forced": result,
                          "rollout": {"context_groups": 1, "horizons": {}}})
    assert "relative to seasonal naive (m = 4; below 1 beats it):" in text
    line = next(line for line in text.splitlines()[::-1] if line.strip().startswith("model"))
    assert [float(v) for v in line.split()[1:]] == pytest.approx(
        [relative["mse"], relative["mase"], relative["crps"], relative["wql"]], rel=1e-4)


def test_values_without_a_scale_are_left_out_of_mase():
    pool = _Pool()
    target = np.ones(2)
    pool.add(0, target, target + 1.0, {name: target for name in BASELINES})  # too short a history
    pool.add(1, target, target + 2.0, {name: target for name in BASELINES}, scale=np.array([0.0, 4.0]))  # constant
    pool.add(2, target, target + 3.0, {name: target for name in BASELINES}, scale=np.array([1.5, 1.5]))
    result = pool.score()
    assert result["mase_values"] == 3
    assert result["model"]["mase"] == pytest.approx((2.0 / 4.0 + 3.0 / 1.5 + 3.0 / 1.5) / 3)
    assert result["model"]["relative_to_seasonal_naive"]["mase"] is None  # seasonal naive is exact here
