"""The evaluation table: one block per mode and horizon, none for what could not be scored."""

import numpy as np
import pytest

from wmfactory.eval.metrics import BASELINES
from wmfactory.eval.report import _Pool, format_report


def pool_of(rows: int) -> _Pool:
    pool = _Pool()
    rng = np.random.default_rng(0)
    for row in range(rows):
        target = rng.normal(size=3)
        pool.add(row, target, target + 0.1, {name: target + 1.0 for name in BASELINES})
    return pool


def test_blocks_with_nothing_scored_are_left_out():
    empty = _Pool()
    empty.exclude()
    report = {"teacher_forced": pool_of(4).score(),
              "rollout": {"context_groups": 1, "horizons": {"1": pool_of(3).score(), "2": empty.score()}}}
    text = format_report(report)
    assert "teacher-forced: 4 vectors scored" in text and "rollout h=1 (context 1 group(s)): 3 vectors" in text
    assert "h=2" not in text
    # the model is 0.1 off in each dimension, every baseline 1.0: skill 1 - 0.01 / 1
    assert "skill vs persistence: 0.9900 (the model beats persistence)" in text


def test_scale_free_score_per_dataset_and_geometric_mean():
    from wmfactory.eval.report import pools_report

    rng = np.random.default_rng(1)
    forced, horizons = _Pool(), {1: _Pool()}
    # dataset a: model 0.1 off in each dimension, persistence 1, the others 2; dataset b: model 0.5 off, persistence
    # 2; in a, 5 units larger vectors (a different scale), which the relative MSE does not see
    for dataset, model_error, persistence_error, scale in (("a", 0.1, 1.0, 5.0), ("b", 0.5, 2.0, 1.0)):
        for row in range(3):
            target = scale * rng.normal(size=4)
            baselines = {name: target + 2.0 for name in BASELINES}
            baselines["persistence"] = target + persistence_error
            for pool in (forced, horizons[1]):
                pool.add(row if dataset == "a" else row + 3, target, target + model_error, baselines,
                         dataset=dataset)
    forced.exclude("b")
    report = pools_report(forced, horizons, context_groups=1)
    a, b = report["datasets"]["a"]["teacher_forced"], report["datasets"]["b"]["teacher_forced"]
    assert a["vectors"] == 3 and a["excluded_vectors"] == 0 and b["excluded_vectors"] == 1
    assert report["teacher_forced"]["vectors"] == 6 and report["teacher_forced"]["excluded_vectors"] == 1
    assert a["model"]["relative_mse"] == pytest.approx(0.01) and b["model"]["relative_mse"] == pytest.approx(0.0625)
    assert a["ridge"]["relative_mse"] == pytest.approx(4.0) and b["ridge"]["relative_mse"] == pytest.approx(1.0)
    assert a["persistence"]["relative_mse"] == 1.0
    # over all vectors: model (3 x 0.01 + 3 x 0.25) / 6 against persistence (3 x 1 + 3 x 4) / 6
    assert report["teacher_forced"]["model"]["relative_mse"] == pytest.approx(0.78 / 15)
    mean = report["geometric_mean"]["teacher_forced"]
    assert mean["datasets"] == ["a", "b"]
    assert mean["model"] == pytest.approx(np.sqrt(0.01 * 0.0625)) and mean["ridge"] == pytest.approx(2.0)
    assert report["geometric_mean"]["rollout"]["1"]["model"] == pytest.approx(0.025)
    text = format_report(report)
    assert "per dataset: MSE / persistence MSE" in text
    lines = text.splitlines()
    row_b = lines[lines.index(next(line for line in lines if line.strip().startswith("rollout h=1") and
                                   "linear" in line)) + 2]
    assert row_b.split() == ["b", "0.0625", "1", "1", "1", "1", "1"]  # model, then each baseline
    assert lines[-1].split() == ["geometric", "mean", "0.025", "1", "2", "2", "2", "2"]
