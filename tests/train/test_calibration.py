"""The interval counting and the choice of temperature behind `calibrate_temperature`, against NumPy."""

import numpy as np
import pytest
import torch

from wmfactory.train.wm.calibration import LEVELS, TEMPERATURES, choose_temperature, interval_hits


def test_interval_hits_match_numpy_quantiles():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(32, 50, 3)).astype(np.float32)
    target = (rng.normal(size=(50, 3)) * 1.5).astype(np.float32)
    expected = []
    for level in LEVELS:
        low, high = np.quantile(draws, [0.5 - level / 200, 0.5 + level / 200], axis=0)
        expected.append(int(((target >= low) & (target <= high)).sum()))
    assert interval_hits(torch.from_numpy(draws), torch.from_numpy(target)) == expected


def test_interval_hits_in_chunks_equal_one_pass(monkeypatch):
    import wmfactory.train.wm.calibration as calibration

    rng = np.random.default_rng(1)
    draws, target = torch.from_numpy(rng.normal(size=(16, 40, 5))), torch.from_numpy(rng.normal(size=(40, 5)))
    whole = interval_hits(draws, target)
    monkeypatch.setattr(calibration, "CHUNK_VALUES", 16 * 5 * 3)  # 3 vectors per chunk
    assert interval_hits(draws, target) == whole


def test_choose_temperature_takes_the_smallest_gap_and_prefers_one_on_ties():
    coverage = np.tile([0.2, 0.6], (len(TEMPERATURES), 1))
    at = {t: i for i, t in enumerate(np.round(TEMPERATURES, 3))}
    coverage[at[1.587]] = [0.49, 0.91]
    assert choose_temperature(coverage) == TEMPERATURES[at[1.587]]
    flat = np.tile([0.5, 0.9], (len(TEMPERATURES), 1))  # every temperature calibrated: keep 1
    assert choose_temperature(flat) == pytest.approx(1.0)
