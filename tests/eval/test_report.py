"""The evaluation table: one block per mode and horizon, none for what could not be scored."""

import numpy as np

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
