"""A world model with a mixture head: trained, sampled in rollouts and in `predict`, scored by `eval` as a
distribution."""

import json

import numpy as np
import pytest
from conftest import train_args, write_dynamics_dataset

from wmfactory import WorldModel
from wmfactory.commands.evaluate import run_eval
from wmfactory.commands.predict import read_predictions, run_predict
from wmfactory.train.tuner import run_exp
from wmfactory.train.wm.calibration import LEVELS, TEMPERATURES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixture")
    data_dir = write_dynamics_dataset(tmp / "data", rows=12)
    run_exp(train_args(tmp / "out", data_dir, prediction_head_type="mixture", mixture_components=3, max_steps=20,
                       learning_rate=5e-3, embedding_norm="standard", val_size=0.25,
                       # the persistence frame: from the ridge frame's zero start, 20 steps leave the spread between
                       # components (which the temperature does not scale) larger than the components' own
                       predict_residual=True))
    rows = json.loads((tmp / "data" / "dynamics.json").read_text())
    return tmp, WorldModel.from_pretrained(str(tmp / "out")), rows


def test_sampled_rollouts_are_reproducible_and_spread(trained):
    tmp, model, rows = trained
    data_dir = str(tmp / "data")
    draws = model.rollout(rows[0], steps=4, dataset_dir=data_dir, num_samples=16, seed=3)
    assert draws.shape == (16, 4, 4) and np.isfinite(draws).all()
    np.testing.assert_array_equal(draws, model.rollout(rows[0], steps=4, dataset_dir=data_dir, num_samples=16,
                                                       seed=3))
    assert not np.array_equal(draws, model.rollout(rows[0], steps=4, dataset_dir=data_dir, num_samples=16, seed=4))
    spread = draws.std(axis=0).mean()
    cooler = model.rollout(rows[0], steps=4, dataset_dir=data_dir, num_samples=16, seed=3, temperature=0.1)
    assert spread > 0 and cooler.std(axis=0).mean() < 0.5 * spread


def test_predict_writes_samples_and_eval_scores_the_distribution(trained):
    tmp, _, _ = trained
    keys = {"model_name_or_path": str(tmp / "out"), "dataset": "dynamics", "dataset_dir": str(tmp / "data"),
            "num_samples": 6, "seed": 1}
    path = run_predict({**keys, "output_dir": str(tmp / "pred"), "predict_mode": "rollout", "context_groups": 2})
    record = next(read_predictions(path))
    samples = record["samples"]
    assert record["num_samples"] == 6 and samples.shape == (6, *record["predicted"].shape)
    np.testing.assert_allclose(samples.mean(axis=0), record["predicted"], rtol=1e-5, atol=1e-6)
    report = run_eval({**keys, "output_dir": str(tmp / "eval"), "context_groups": 3})  # 3 known: every baseline
    assert report["distributional_head"] is True
    block = report["rollout"]["horizons"]["1"]
    assert block["num_samples"] == 6
    for name in ("model", "persistence", "ridge", "training_mean", "linear_extrapolation"):
        assert {"crps", "energy_score", "coverage_50", "coverage_90", "pit"} <= set(block[name])
    # the draws spread (a deterministic head's CRPS would equal its MAE), and coverage is a share
    assert block["model"]["crps"] != pytest.approx(block["model"]["mae"], rel=1e-3)
    assert 0 <= block["model"]["coverage_50"] <= block["model"]["coverage_90"] <= 1
    assert (tmp / "eval" / "eval_pit.png").read_bytes()[:4] == b"\x89PNG"


def test_sampling_temperature_is_calibrated_on_the_evaluation_split(trained):
    tmp, model, rows = trained
    report = json.loads((tmp / "out" / "calibration_results.json").read_text())
    coverage = np.array([[report[f"coverage_{level}_at_{t:.3g}"] for level in LEVELS] for t in TEMPERATURES])
    assert report["values"] > 0 and ((0 <= coverage) & (coverage <= 1)).all()
    assert (np.diff(coverage[:, 1]) >= -0.05).all()  # wider draws hold more values, up to sampling noise
    gaps = np.abs(coverage[:, 1] - 0.9)  # the 90% interval
    best = TEMPERATURES[np.isclose(gaps, gaps.min(), atol=1e-6)]
    assert report["sampling_temperature"] == pytest.approx(best[np.argmin(np.abs(np.log(best)))], rel=1e-3)
    # saved in config.json, the default of teacher-forced draws; a rollout's first step draws at its band's
    assert model.config.sampling_temperature == pytest.approx(report["sampling_temperature"], rel=1e-3)
    assert model.config.temperature_at(None) == model.config.sampling_temperature
    data_dir = str(tmp / "data")
    np.testing.assert_array_equal(
        model.rollout(rows[0], steps=1, dataset_dir=data_dir, num_samples=4, seed=5),
        model.rollout(rows[0], steps=1, dataset_dir=data_dir, num_samples=4, seed=5,
                      temperature=model.config.temperature_at(1)))


def test_each_rollout_horizon_band_has_its_calibrated_temperature(trained):
    tmp, model, rows = trained
    report = json.loads((tmp / "out" / "calibration_results.json").read_text())
    bands = model.config.horizon_temperatures
    assert bands == report["horizon_temperatures"] and len(bands) >= 2  # rows of 6 groups: horizons 1 to 5
    # horizon 1 is chosen on rollouts too (the teacher-forced temperature is chosen on every position)
    assert list(report["horizon_bands"])[:2] == ["1-1", "2-3"] and len(report["horizon_bands"]) == len(bands)
    for (name, band), temperature in zip(report["horizon_bands"].items(), bands):
        shares = {float(t): share for t, share in band["coverage_90"].items()}
        closest = min(abs(share - 0.9) for share in shares.values())
        assert abs(shares[min(shares, key=lambda t: abs(t - temperature))] - 0.9) == pytest.approx(closest, abs=1e-6)
    assert [model.config.temperature_at(h) for h in (None, 1, 2, 3)] == [
        model.config.sampling_temperature, bands[0], bands[1], bands[1]]
    assert model.config.temperature_at(100) == bands[-1]
    # a rollout's second step draws at the band-1 temperature
    data_dir = str(tmp / "data")
    np.testing.assert_array_equal(
        model.rollout(rows[0], steps=2, dataset_dir=data_dir, num_samples=4, seed=5),
        _with_bands(model, [bands[0], bands[1]], lambda: model.rollout(rows[0], steps=2, dataset_dir=data_dir,
                                                                       num_samples=4, seed=5)))
    other = _with_bands(model, [bands[0], bands[1] * 3], lambda: model.rollout(rows[0], steps=2, dataset_dir=data_dir,
                                                                               num_samples=4, seed=5))
    default = model.rollout(rows[0], steps=2, dataset_dir=data_dir, num_samples=4, seed=5)
    np.testing.assert_array_equal(other[:, 0], default[:, 0])
    assert not np.array_equal(other[:, 1], default[:, 1])


def _with_bands(model, bands, call):
    saved = model.config.horizon_temperatures
    model.config.horizon_temperatures = bands
    try:
        return call()
    finally:
        model.config.horizon_temperatures = saved


def test_without_an_evaluation_split_every_tenth_row_calibrates(tmp_path, caplog):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=23)
    with caplog.at_level("INFO", logger="wmfactory"):
        run_exp(train_args(tmp_path / "out", data_dir, prediction_head_type="quantile", max_steps=2))
    said = [r.message for r in caplog.records if r.message.startswith("Calibration:")]
    assert len(said) == 1 and "2 of 23 training rows (every 10th: rows 9, 19)" in said[0]
    report = json.loads((tmp_path / "out" / "calibration_results.json").read_text())
    assert report["values"] == 2 * 5 * 4  # two rows, five targets of four values each
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert model.config.horizon_temperatures == report["horizon_temperatures"]
    assert model.config.sampling_temperature == pytest.approx(report["sampling_temperature"])
