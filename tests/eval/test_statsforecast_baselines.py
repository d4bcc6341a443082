"""`eval --baselines statsforecast`: AutoETS and AutoARIMA in the rollouts, each forecast equal to statsforecast's own
on the row's history; too short a history, too wide a stream and a missing extra each said plainly."""

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import train_args, write_dynamics_dataset

from wmfactory.extras.errors import ConfigError

pytest.importorskip("statsforecast")  # the `forecast` extra, which the `test` extra installs

# rows of 10 vectors, rolled out after 8 (origin m8): horizons 1 and 2; the season 3 (the 2-d map is a reflection,
# of period 2: with m = 2 seasonal naive would be exact)
STEPS, CONTEXT, SEASON = 10, 8, 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from wmfactory.train.tuner import run_exp

    tmp = tmp_path_factory.mktemp("statsforecast")
    data_dir = write_dynamics_dataset(tmp / "data", rows=4, steps=STEPS, d=2)
    run_exp(train_args(tmp / "out", data_dir, max_steps=1))
    rows = json.loads((tmp / "data" / "dynamics.json").read_text())
    truth = [np.concatenate([json.loads((tmp / "data" / row["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                             for t in range(1, STEPS + 1)]) for row in rows]  # [10, 2] each
    return tmp, truth


def test_auto_ets_and_auto_arima_are_statsforecasts_own_forecasts_of_the_history(trained):
    from statsforecast.models import AutoARIMA, AutoETS

    from wmfactory.commands.evaluate import run_eval
    from wmfactory.eval.report import format_report

    tmp, truth = trained
    report = run_eval({"model_name_or_path": str(tmp / "out"), "dataset": "dynamics", "dataset_dir": str(tmp / "data"),
                       "output_dir": str(tmp / "eval"), "context_groups": CONTEXT, "seasonality": SEASON,
                       "baselines": "statsforecast", "num_samples": 8, "seed": 0})
    assert report["statsforecast"]["streams"] == ["m"] and report["statsforecast"]["excluded_vectors"] == {"m": 0}
    for model, name in ((AutoETS, "auto_ets"), (AutoARIMA, "auto_arima")):
        # each dimension of each row on its own, on the 8 known vectors, with the eval's season
        with np.errstate(all="ignore"):
            forecasts = np.stack([np.stack([model(season_length=SEASON).forecast(
                y=x[:CONTEXT, dim].astype(np.float64), h=2)["mean"] for dim in range(2)], 1)
                for x in truth])  # [rows, 2 horizons, 2 dims]
        for h in (1, 2):
            block = report["rollout"]["horizons"][str(h)]
            errors = forecasts[:, h - 1] - np.stack([x[CONTEXT + h - 1] for x in truth])
            assert block[name]["mse"] == pytest.approx(np.mean(errors ** 2), rel=1e-4)
            assert block[name]["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-4)
            naive = np.stack([x[CONTEXT - SEASON + h - 1] - x[CONTEXT + h - 1] for x in truth])  # m back
            assert block[name]["relative_to_seasonal_naive"]["mse"] == pytest.approx(
                np.mean(errors ** 2) / np.mean(naive ** 2), rel=1e-4)
            # as distributions: Gaussian draws with the spread of the model's prediction interval
            assert np.isfinite([block[name]["crps"], block[name]["wql"]]).all()
            assert block[name]["relative_to_seasonal_naive"]["crps"] == pytest.approx(
                block[name]["crps"] / block["seasonal_naive"]["crps"])
    assert "auto_ets" not in report["teacher_forced"]  # a fit per vector: rollouts only
    saved = json.loads((tmp / "eval" / "eval_results.json").read_text())
    assert saved["rollout"]["horizons"]["1"]["auto_arima"]["mse"] == report["rollout"]["horizons"]["1"][
        "auto_arima"]["mse"]
    text = format_report(report)
    lines = text.splitlines()
    # a line in each table (points, distributions, relative to seasonal naive) of each of the 2 rollout horizons
    assert [line.split()[0] for line in lines if line.strip().startswith("auto_")].count("auto_ets") == 6
    assert lines[-1].startswith("auto_ets, auto_arima (statsforecast): fitted per dimension")


def test_an_origin_with_too_short_a_history_is_not_scored_and_counted(trained):
    from wmfactory import WorldModel
    from wmfactory.eval.report import evaluate_rows
    from wmfactory.eval.statistical import MIN_HISTORY

    tmp, truth = trained
    model = WorldModel.from_pretrained(str(tmp / "out"))
    rows = [model.encode_row(("dynamics", i), str(tmp / "data")) for i in range(len(truth))]
    context = MIN_HISTORY - 1  # one known vector short of AutoETS's minimum
    report = evaluate_rows(model, rows, context_groups=context, baselines=("statsforecast",))
    excluded = len(rows) * (STEPS - context)
    assert report["statsforecast"]["excluded_vectors"] == {"m": excluded}
    assert all(block["vectors"] == 0 and block["excluded_vectors"] == len(rows)
               for block in report["rollout"]["horizons"].values())
    assert report["teacher_forced"]["vectors"] > 0  # the teacher-forced scores are as without the option


def test_a_missing_extra_is_one_clear_error(monkeypatch):
    from wmfactory.eval.statistical import require_statsforecast

    monkeypatch.setitem(sys.modules, "statsforecast", None)  # `import statsforecast` now raises ImportError
    monkeypatch.setitem(sys.modules, "statsforecast.models", None)
    with pytest.raises(ConfigError, match=r"needs statsforecast: pip install 'wmfactory\[forecast\]'$"):
        require_statsforecast()


def test_streams_wider_than_the_limit_are_skipped_and_none_left_is_an_error(capsys):
    from wmfactory.eval.report import _statistical_streams
    from wmfactory.eval.statistical import MAX_DIMS

    mixed = SimpleNamespace(stream_dims={"x": 2, "text": MAX_DIMS + 1}, embedding_dim=MAX_DIMS + 1)
    assert _statistical_streams(mixed, ["x", "text"], ("statsforecast",)) == (["x"], {"text": MAX_DIMS + 1})
    assert f"wider than {MAX_DIMS} dimensions skipped (no auto_ets or auto_arima there): 'text' (9)" in (
        capsys.readouterr().err)
    assert _statistical_streams(mixed, ["x", "text"], ()) == ([], {})
    with pytest.raises(ConfigError, match=rf"at most {MAX_DIMS} dimensions; the predicted stream\(s\) are wider: "
                                          r"'text' \(9\)"):
        _statistical_streams(mixed, ["text"], ("statsforecast",))


def test_the_baselines_key_takes_statsforecast_only():
    from wmfactory.hparams import InferenceArguments

    assert InferenceArguments(baselines="StatsForecast").extra_baselines == ("statsforecast",)
    assert InferenceArguments(baselines=["statsforecast", "statsforecast"]).baselines == "statsforecast"
    assert InferenceArguments().extra_baselines == ()
    with pytest.raises(ConfigError, match="`baselines` takes statsforecast, got prophet"):
        InferenceArguments(baselines="prophet")


def test_the_statistical_baselines_have_their_geometric_mean_over_datasets():
    from wmfactory.eval.metrics import BASELINES
    from wmfactory.eval.report import _Pool, format_report, pools_report

    rng = np.random.default_rng(0)
    forced, horizons = _Pool(), {1: _Pool()}
    for dataset, ets_error in (("a", 0.5), ("b", 1.0)):  # persistence 1 off in each dimension, auto_ets as given
        for row in range(3):
            target = rng.normal(size=2)
            baselines = {name: target + 1.0 for name in BASELINES}
            forced.add(row, target, target + 0.1, baselines, dataset=dataset)
            horizons[1].add(row, target, target + 0.1, {**baselines, "auto_ets": target + ets_error,
                                                         "auto_arima": target + 1.0}, dataset=dataset)
    report = pools_report(forced, horizons, context_groups=1)
    mean = report["geometric_mean"]["rollout"]["1"]
    assert mean["auto_ets"] == pytest.approx(0.5) and mean["auto_arima"] == pytest.approx(1.0)
    assert "auto_ets" not in report["geometric_mean"]["teacher_forced"]
    lines = format_report(report).splitlines()
    header = next(line for line in lines if line.strip().startswith("rollout h=1") and "linear" in line)
    assert header.split()[-2:] == ["auto_ets", "auto_arima"]
    assert lines[lines.index(header) + 3].split() == ["geometric", "mean", "0.01", "1", "1", "1", "1", "1", "0.5", "1"]
