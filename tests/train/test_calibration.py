"""The interval counting and the choice of temperature behind `calibrate_temperature`, against NumPy."""

import numpy as np
import pytest
import torch

from wmfactory.train.wm.calibration import TEMPERATURES, choose_temperature, interval_hits


def test_interval_hits_count_each_value_by_its_rank():
    # 3 draws per value: a value with r draws below it counts |[r/4, (r+1)/4] inside the interval| * 4
    draws = torch.tensor([[[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]], [[2.0, 2.0, 2.0]]])  # [S=3, n=1, d=3]
    target = torch.tensor([[-1.0, 1.5, 3.0]])  # 0, 2 and 3 draws below
    # 50% [0.25, 0.75]: 0, 1, 0; 90% [0.05, 0.95]: 0.8, 1, 0.8
    assert interval_hits(draws, target) == pytest.approx([1.0, 2.6])
    rng = np.random.default_rng(0)
    calibrated = interval_hits(torch.from_numpy(rng.normal(size=(32, 3000, 2))), torch.from_numpy(
        rng.normal(size=(3000, 2))))
    assert calibrated[0] / 6000 == pytest.approx(0.5, abs=0.02) and calibrated[1] / 6000 == pytest.approx(0.9, abs=0.015)


def test_choose_temperature_fits_the_90_percent_interval_and_prefers_one_on_ties():
    coverage = np.tile([0.2, 0.6], (len(TEMPERATURES), 1))
    at = {t: i for i, t in enumerate(np.round(TEMPERATURES, 3))}
    coverage[at[1.587]] = [0.7, 0.905]  # the 50% share does not count
    coverage[at[1.414]] = [0.5, 0.88]
    assert choose_temperature(coverage) == TEMPERATURES[at[1.587]]
    flat = np.tile([0.5, 0.9], (len(TEMPERATURES), 1))  # every temperature calibrated: keep 1
    assert choose_temperature(flat) == pytest.approx(1.0)


def test_rollout_starts_spread_over_the_places_that_reach_the_horizon():
    from wmfactory.train.wm.calibration import rollout_starts

    row = {"embedding_groups": list(range(11))}  # 11 groups of one stream
    assert rollout_starts(row, 2, 1, 1) == [2, 5, 7, 10]  # horizon 1 from group 10 is the row's last group
    assert rollout_starts(row, 2, 8, 1) == [2, 3]  # horizon 8 from group 3 is group 10
    assert rollout_starts(row, 3, 9, 1) == [] and rollout_starts(row, 2, 1, 1, count=1) == [2]
    # two streams alternating (s, a, s, a, ...): starts keep to the first's stream, horizons count its steps
    assert rollout_starts({"embedding_groups": list(range(12))}, 2, 2, 2) == [2, 4, 6, 8]
