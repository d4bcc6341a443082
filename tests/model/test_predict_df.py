"""`WorldModel.predict_df`: the mean is the rollout's, the quantiles are those of the sampled rollouts and monotone,
the time stamps continue each series, and a bad future table gives one clear line."""

import json

import numpy as np
import pandas as pd
import pytest

from wmfactory import predict
from wmfactory.commands.predict import read_predictions
from wmfactory.data import from_dataframe
from wmfactory.extras.errors import DataError
from wmfactory.model import WorldModel
from wmfactory.train.tuner import run_exp

from conftest import train_args

LEVELS = [0.1, 0.5, 0.9]


def shop_table(n: int = 16) -> pd.DataFrame:
    parts = []
    for i, key in enumerate(["a", "b"]):
        t = np.arange(n)
        promo = ((t + i) % 4 == 0) * 1.0
        parts.append(pd.DataFrame({"item_id": key, "timestamp": pd.date_range("2022-01-03", periods=n, freq="W-MON"),
                                   "sales": np.sin(t / 2 + i) + promo, "promo": promo}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shop")
    df = shop_table()
    from_dataframe(df, "item_id", "timestamp", ["sales"], known_covariates=["promo"], context_length=6,
                   prediction_length=2, out_dir=str(tmp / "data"), name="shop", stride=1)
    run_exp(train_args(tmp / "out", tmp / "data", dataset="shop", condition_streams="x", max_steps=4,
                       prediction_head_type="mixture", lm_loss_weight=0.0))
    return WorldModel.from_pretrained(str(tmp / "out")), df, tmp


def future_of(df: pd.DataFrame, steps: int = 3) -> pd.DataFrame:
    stamps = pd.date_range("2022-04-25", periods=steps, freq="W-MON")
    return pd.DataFrame({"item_id": np.repeat(["a", "b"], steps), "timestamp": np.tile(stamps, 2),
                         "promo": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0][: 2 * steps]})


def test_mean_is_the_rollout_and_quantiles_are_those_of_the_draws(trained):
    model, df, _ = trained
    future = future_of(df)
    out = model.predict_df(df, future, target="sales", quantile_levels=LEVELS, num_samples=16, seed=3,
                           context_length=6)
    assert list(out.columns) == ["item_id", "timestamp", "target_name", "mean", "0.1", "0.5", "0.9"]
    assert len(out) == 6 and set(out.target_name) == {"sales"}
    for key in ["a", "b"]:
        mine = out[out.item_id == key]
        assert list(mine.timestamp) == list(future.timestamp[future.item_id == key])
        history = df[df.item_id == key].iloc[-6:]
        ahead = future[future.item_id == key].promo.to_numpy(np.float32)[:, None]
        # the row by hand: 6 steps of <x><y>, one more step after them (cut by context_groups=12)
        row = {"messages": [{"role": "user", "content": "<x><y>" * 7}, {"role": "assistant", "content": ""}],
               "embeddings": {"x": [[v] for v in history.promo] + [[ahead[0, 0]]],
                              "y": [[v] for v in history.sales] + [[0.0]]}}
        mean = model.rollout(row, 3, context_groups=12, conditions={"x": ahead})
        np.testing.assert_array_equal(mine["mean"].to_numpy(np.float32), mean[:, 0])
        draws = model.rollout(row, 3, context_groups=12, conditions={"x": ahead}, num_samples=16, seed=3)
        expected = np.quantile(draws[:, :, 0].astype(np.float64), LEVELS, axis=0).T  # [3, Q]
        np.testing.assert_allclose(mine[["0.1", "0.5", "0.9"]].to_numpy(), expected, rtol=1e-6)
    quantiles = out[["0.1", "0.5", "0.9"]].to_numpy()
    assert (np.diff(quantiles, axis=1) >= 0).all()
    assert (quantiles[:, 2] - quantiles[:, 0] > 0).all()  # a mixture head's draws spread


def test_the_future_table_decides_the_horizon_and_is_checked(trained):
    model, df, _ = trained
    with pytest.raises(DataError, match=r"future_df: column 'promo' not found"):
        model.predict_df(df, future_of(df).drop(columns="promo"), target="sales", known_covariates=["promo"])
    with pytest.raises(DataError, match=r"the model reads 1 known covariate\(s\) \(stream `x`\), but 0 were given"):
        model.predict_df(df, future_of(df).drop(columns="promo"), target="sales")
    with pytest.raises(DataError, match=r"known covariates \['promo'\] need `future_df`"):
        model.predict_df(df, target="sales", known_covariates=["promo"], prediction_length=2)
    with pytest.raises(DataError, match=r"future_df: id 'a' has 3 time stamp\(s\) after the end of df .*; 4 are "):
        model.predict_df(df, future_of(df), target="sales", prediction_length=4)
    late = future_of(df).assign(timestamp=lambda d: d.timestamp + pd.Timedelta(weeks=1))
    with pytest.raises(DataError, match=r"future_df: id 'a' starts at 2022-05-02 00:00:00, but the step after"):
        model.predict_df(df, late, target="sales")
    with_target = future_of(df).assign(sales=np.nan)  # a target column in the future table is not a covariate
    same = model.predict_df(df, with_target, target="sales", quantile_levels=[], context_length=6)
    plain = model.predict_df(df, future_of(df), target="sales", quantile_levels=[], context_length=6)
    assert same.equals(plain)
    short = model.predict_df(df, future_of(df, 1), target="sales", quantile_levels=[])
    assert list(short.columns) == ["item_id", "timestamp", "target_name", "mean"] and len(short) == 2


@pytest.mark.parametrize("output_format", ["csv", "parquet"])
def test_predict_writes_the_same_numbers_as_a_long_table(trained, output_format):
    _, df, tmp = trained
    keys = {"model_name_or_path": str(tmp / "out"), "dataset": "shop", "dataset_dir": str(tmp / "data"),
            "predict_mode": "rollout", "context_groups": 12, "num_samples": 8, "seed": 1,
            "quantile_levels": "0.9,0.1"}
    lines = list(read_predictions(predict({**keys, "output_dir": str(tmp / "jsonl")})))
    path = predict({**keys, "output_dir": str(tmp / output_format), "output_format": output_format})
    table = pd.read_csv(path) if output_format == "csv" else pd.read_parquet(path)
    assert list(table.columns) == ["item_id", "timestamp", "target_name", "mean", "0.1", "0.9", "mode", "horizon",
                                   "target"]
    rows = [json.loads(line) for line in (tmp / "data" / "shop.jsonl").read_text().splitlines()]
    predicted = [line for line in lines if line["key"] == "y"]
    assert len(table) == len(predicted) > 0
    for line, (_, out) in zip(predicted, table.iterrows()):
        row = rows[line["row"]]
        assert out["item_id"] == row["series"]
        assert pd.Timestamp(out["timestamp"]) == pd.Timestamp(row["timestamps"][line["occurrence"]])
        assert out["mean"] == pytest.approx(float(line["predicted"][0, 0]), rel=1e-6)
        low, high = np.quantile(line["samples"][:, 0, 0].astype(np.float64), [0.1, 0.9])
        assert (out["0.1"], out["0.9"]) == (pytest.approx(low, rel=1e-5), pytest.approx(high, rel=1e-5))
        value = df[(df.item_id == out["item_id"]) & (df.timestamp == pd.Timestamp(out["timestamp"]))].sales.item()
        assert out["target"] == pytest.approx(value, rel=1e-6) and out["horizon"] == line["horizon"]


def test_rows_of_other_datasets_name_their_group_and_dimension(tmp_path):
    from wmfactory.commands.prediction_table import TableRows, table_lines
    from wmfactory.inference import GroupPrediction

    (tmp_path / "dataset_info.json").write_text(json.dumps({"plain": {"file_name": "plain.json"}}))
    group = GroupPrediction(group=2, key="s3", occurrence=0, vector_indices=[4, 5],
                            predicted=np.array([[1.0, 2.0], [3.0, 4.0]]), target=np.array([[0.0, 0.5], [1.0, 1.5]]),
                            horizon=2, samples=np.arange(12, dtype=float).reshape(3, 2, 2), stream="s")
    lines = table_lines({"dataset_name": "plain", "row_index": 7}, [group], "rollout", [0.5],
                        TableRows(str(tmp_path), ["plain"]))
    assert len(lines) == 4
    assert lines[3] == {"dataset": "plain", "row": 7, "key": "s3", "occurrence": 0, "vector": 1,
                        "target_name": "s[1]", "mean": 4.0, "0.5": 7.0, "mode": "rollout", "horizon": 2,
                        "target": 1.5}  # the median of the draws 3, 7, 11


def test_past_covariates_are_read_in_the_history_only(tmp_path):
    """A past-only covariate (`past_streams: p`) informs the forecast through its history, and its values after the
    history reach no forecast: not in `predict_df`/`rollout`, and not in the row-layout generation of eval/predict."""
    from wmfactory.inference import generate_groups

    df = shop_table().assign(visits=lambda d: np.cos(np.arange(len(d)) / 3.0))
    from_dataframe(df, "item_id", "timestamp", ["sales"], known_covariates=["promo"], past_covariates=["visits"],
                   context_length=6, prediction_length=2, out_dir=str(tmp_path / "data"), name="shop", stride=1)
    run_exp(train_args(tmp_path / "out", tmp_path / "data", dataset="shop", condition_streams="x", past_streams="p",
                       max_steps=4, lm_loss_weight=0.0))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert model.config.stream_kind("p").name == "past" and model.config.predicted_streams == ["y"]
    assert model.config.given_streams == ["x"]
    future = future_of(df)
    out = model.predict_df(df, future, target="sales", past_covariates=["visits"], quantile_levels=[],
                           context_length=6)
    history = df[df.item_id == "a"].iloc[-6:]
    ahead = future[future.item_id == "a"].promo.to_numpy(np.float32)[:, None]

    def row(visits_after: float) -> dict:  # 6 steps of history and 3 more of <x><y><p>
        return {"messages": [{"role": "user", "content": "<x><y><p>" * 9}, {"role": "assistant", "content": ""}],
                "embeddings": {"x": [[v] for v in history.promo] + ahead.tolist(),
                               "y": [[v] for v in history.sales] + [[0.0]] * 3,
                               "p": [[v] for v in history.visits] + [[visits_after]] * 3}}

    mean = model.rollout(row(0.0), 3, context_groups=18, conditions={"x": ahead})[:, 0]
    np.testing.assert_array_equal(out[out.item_id == "a"]["mean"].to_numpy(np.float32), mean)
    for visits_after in (0.0, 50.0):  # eval's generation leaves the future `p` out, as the rollout does
        groups = generate_groups(model, model.encode_row(row(visits_after)), context_groups=18)
        assert [g.stream for g in groups] == ["y"] * 3
        np.testing.assert_allclose(np.concatenate([g.predicted[:, 0] for g in groups]), mean, rtol=1e-5, atol=1e-6)
    moved = df.copy()
    moved.loc[history.index[-1], "visits"] += 3.0  # the last seen past covariate moves the forecast
    again = model.predict_df(moved, future, target="sales", past_covariates=["visits"], quantile_levels=[],
                             context_length=6)
    # (a short training: the effect is small, but each series runs alone and bit-for-bit, so b stays exactly)
    assert np.abs(again[again.item_id == "a"]["mean"].to_numpy() - mean).max() > 1e-6
    assert again[again.item_id == "b"]["mean"].equals(out[out.item_id == "b"]["mean"])
    with pytest.raises(DataError, match=r"the model reads 1 past-only covariate\(s\) \(stream `p`\), but 0 were"):
        model.predict_df(df, future, target="sales", quantile_levels=[])
