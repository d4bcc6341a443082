"""`from_dataframe`: a long table -> rows whose vectors are the table's values, windows as documented, and one clear
line per bad table."""

import json

import numpy as np
import pandas as pd
import pytest

from wmfactory.data import from_dataframe
from wmfactory.data.rows import encode_row
from wmfactory.data.tables import window_starts
from wmfactory.extras.errors import ConfigError, DataError
from wmfactory.inference import stream_sequence, vector_stream



def table(n: int = 13, ids=("a", "b")) -> pd.DataFrame:
    """Two monthly series with two targets and one known covariate, every value distinct."""
    parts = []
    for i, key in enumerate(ids):
        t = np.arange(n)
        parts.append(pd.DataFrame({"item_id": key, "timestamp": pd.date_range("2021-01-01", periods=n, freq="MS"),
                                   "sales": 100.0 * i + t, "price": 0.5 * t - i, "promo": (t % 3 == 0) * 1.0 + i}))
    return pd.concat(parts, ignore_index=True)


def rows_of(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_windows_end_at_the_last_step_and_one_starts_at_the_first():
    assert window_starts(13, 7, 3) == [0, 3, 6]
    assert window_starts(14, 7, 3) == [0, 1, 4, 7]
    assert window_starts(5, 7, 3) == [0]
    assert window_starts(7, 7, 1) == [0]


def test_rows_hold_the_tables_values_in_order(tmp_path, tokenizer):
    df = table()
    path = from_dataframe(df, "item_id", "timestamp", ["sales", "price"], known_covariates=["promo"],
                          context_length=4, prediction_length=3, out_dir=str(tmp_path), name="shop")
    rows = rows_of(path)
    assert len(rows) == 2 * 3  # windows [0, 3, 6] of 7 steps in each series of 13
    info = json.loads((tmp_path / "dataset_info.json").read_text())["shop"]
    assert info["table"]["targets"] == ["sales", "price"] and info["table"]["freq"] == "MS"
    assert info["table"]["stride"] == 3
    for row in rows:
        part = df[df.item_id == row["series"]].set_index("timestamp")
        stamps = pd.to_datetime(row["timestamps"])
        features = encode_row(row, tokenizer, "empty", "next", {"x": 1, "y": 2}, str(tmp_path), ("x",))
        vectors = vector_stream(features)
        streams = stream_sequence(features)
        assert streams == ["x", "y"] * len(stamps)  # the covariate of each step before its target
        np.testing.assert_array_equal(vectors[1::2, :2], part.loc[stamps, ["sales", "price"]].to_numpy(np.float32))
        np.testing.assert_array_equal(vectors[0::2, :1], part.loc[stamps, ["promo"]].to_numpy(np.float32))
        # every target after the first is a target; the covariates never are
        assert features["embedding_is_target"] == [False, False] + [False, True] * (len(stamps) - 1)
    last = [row for row in rows if row["series"] == "b"][-1]
    assert last["timestamps"][-1] == "2022-01-01T00:00:00"


def test_one_stream_without_covariates_and_integer_time_stamps(tmp_path, tokenizer):
    df = pd.DataFrame({"id": 7, "t": np.arange(10, 30, 2), "v": np.linspace(-1, 1, 10)})
    path = from_dataframe(df, "id", "t", "v", context_length=3, prediction_length=2, out_dir=str(tmp_path),
                          name="ints", stride=1)
    rows = rows_of(path)
    assert len(rows) == 6 and rows[0]["timestamps"] == ["10", "12", "14", "16", "18"]
    assert rows[0]["messages"][0]["content"] == "<y>" * 5
    features = encode_row(rows[-1], tokenizer, "empty", "next", 1, str(tmp_path))
    np.testing.assert_array_equal(vector_stream(features)[:, 0], df.v.to_numpy(np.float32)[-5:])


def test_boolean_covariates_are_zero_and_one(tmp_path, tokenizer):
    df = table(n=5).assign(promo=lambda d: d.promo > 0.5)
    rows = rows_of(from_dataframe(df, "item_id", "timestamp", ["sales"], known_covariates=["promo"],
                                  context_length=3, prediction_length=2, out_dir=str(tmp_path), name="flags"))
    features = encode_row(rows[0], tokenizer, "empty", "next", {"x": 1, "y": 1}, str(tmp_path), ("x",))
    np.testing.assert_array_equal(vector_stream(features)[0::2, 0], df.promo[df.item_id == "a"].to_numpy(float))


def test_a_series_text_opens_its_rows(tmp_path):
    df = table(n=6).assign(about=lambda d: "store " + d.item_id)
    rows = rows_of(from_dataframe(df, "item_id", "timestamp", ["sales"], text_column="about", context_length=3,
                                  prediction_length=3, out_dir=str(tmp_path), name="t"))
    assert rows[0]["messages"][0]["content"] == "store a " + "<y>" * 6


def bad(tmp_path, df, **options):
    keys = {"id_column": "item_id", "timestamp_column": "timestamp", "targets": ["sales"],
            "context_length": 4, "prediction_length": 2, "out_dir": str(tmp_path), "name": "bad", **options}
    with pytest.raises(DataError) as caught:
        from_dataframe(df, **keys)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_each_bad_table_gives_one_clear_line(tmp_path):
    df = table()
    twice = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    assert "id 'a' has the time stamp 2021-04-01 00:00:00 more than once" in bad(tmp_path, twice)
    words = df.assign(sales=df.sales.astype(str))
    assert "column 'sales' must be numeric, got dtype" in bad(tmp_path, words)
    gap = df.copy()
    gap.loc[5, "sales"] = np.nan
    assert "column 'sales' has a missing or infinite value at line 5 (id 'a'" in bad(tmp_path, gap)
    irregular = df.drop(index=[4])
    assert "the time stamps of id 'a' are not evenly spaced; pass `freq`" in bad(tmp_path, irregular)
    assert ("id 'a' does not step by MS from 2021-04-01 00:00:00: the next time stamp is 2021-06-01 00:00:00, "
            "expected 2021-05-01 00:00:00") in bad(tmp_path, irregular, freq="MS")
    assert "column 'promo2' not found" in bad(tmp_path, df, known_covariates=["promo2"])
    assert "column 'promo' must be numeric" in bad(tmp_path, df.assign(promo="yes"), known_covariates=["promo"])
    assert "column 'note' not found" in bad(tmp_path, df, text_column="note")
    ints = pd.DataFrame({"item_id": 1, "timestamp": [1, 2, 4, 5], "sales": 1.0})
    assert "id 1 does not step by 1 from 2: the next time stamp is 4, expected 3" in bad(tmp_path, ints)


def test_past_covariates_follow_the_target_of_each_step(tmp_path, tokenizer):
    df = table()
    path = from_dataframe(df, "item_id", "timestamp", ["sales"], known_covariates=["promo"],
                          past_covariates=["price"], context_length=4, prediction_length=3, out_dir=str(tmp_path),
                          name="shop")
    info = json.loads((tmp_path / "dataset_info.json").read_text())["shop"]
    assert info["table"]["past_covariates"] == ["price"] and info["table"]["known_covariates"] == ["promo"]
    for row in rows_of(path):
        part = df[df.item_id == row["series"]].set_index("timestamp")
        stamps = pd.to_datetime(row["timestamps"])
        # the last 3 steps (the forecast part; fewer in a short series, which keeps one step of history) as a
        # rollout reads them: no past-only covariate
        future = min(3, len(stamps) - 1)
        history = len(stamps) - future
        assert row["messages"][0]["content"] == "<x><y><p>" * history + "<x><y>" * future
        features = encode_row(row, tokenizer, "empty", "next", {"p": 1, "x": 1, "y": 1}, str(tmp_path), ("x", "p"))
        vectors = vector_stream(features)
        assert stream_sequence(features) == ["x", "y", "p"] * history + ["x", "y"] * future
        cut = 3 * history
        for offset, column in enumerate(["promo", "sales", "price"]):
            np.testing.assert_array_equal(vectors[offset:cut:3, 0], part.loc[stamps[:history], column].to_numpy(np.float32))
        for offset, column in enumerate(["promo", "sales"]):
            np.testing.assert_array_equal(vectors[cut + offset::2, 0], part.loc[stamps[history:], column].to_numpy(np.float32))
        # only the targets are targets (from the second step on); neither kind of covariate ever is
        assert features["embedding_is_target"] == ([False] * 3 + [False, True, False] * (history - 1)
                                                   + [False, True] * future)
    alone = rows_of(from_dataframe(df, "item_id", "timestamp", ["sales"], past_covariates="price", context_length=4,
                                   prediction_length=3, out_dir=str(tmp_path), name="past"))
    assert alone[0]["messages"][0]["content"] == "<y><p>" * 4 + "<y>" * 3 and set(alone[0]["embeddings"]) == {"y", "p"}
    assert len(alone[0]["embeddings"]["p"]) == 4 and len(alone[0]["embeddings"]["y"]) == 7


def test_a_column_of_two_kinds_is_refused(tmp_path):
    for options, words in (({"known_covariates": ["price"], "past_covariates": ["price"]},
                            "['price'] are both known covariates and past-only covariates"),
                           ({"past_covariates": ["sales"]}, "['sales'] are both targets and past-only covariates")):
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
            from_dataframe(table(), "item_id", "timestamp", ["sales"], out_dir=str(tmp_path), **options)
    assert not (tmp_path / "dataset_info.json").exists()


def test_windows_of_series_are_held_out_by_time_and_score_only_unseen_steps(tmp_path, tokenizer):
    """`val_size` on a table's rows: each series' latest windows, in the same proportion for series of different
    lengths; a held-out window's steps that a training window holds too (stride-1 windows overlap) are history, not
    targets, so every scored value is after the last step the model trains on."""
    from test_loader import load

    df = pd.concat([table(30, ids=("a",)), table(20, ids=("b",)).assign(item_id="b")], ignore_index=True)
    from_dataframe(df, "item_id", "timestamp", ["sales"], context_length=3, prediction_length=2,
                   out_dir=str(tmp_path), name="shop", stride=1)
    module = load(tokenizer, tmp_path, dataset="shop", val_size=0.2)  # 26 + 16 windows of 5 steps: 9 held out
    train, held = module.train_dataset, module.eval_dataset
    assert (len(train), len(held)) == (42 - 9, 9)
    trained_until = {}
    for series, stamps in zip(train["series"], train["timestamps"]):
        trained_until[series] = max(trained_until.get(series, stamps[-1]), stamps[-1])
    counts = {"a": 0, "b": 0}
    for row in held:
        counts[row["series"]] += 1
        stamps = row["timestamps"]
        assert stamps[-1] > trained_until[row["series"]]  # ISO stamps of one format order as text
        scored = [stamps[g] for g, is_target in zip(row["embedding_groups"], row["embedding_is_target"]) if is_target]
        expected = [stamp for stamp in stamps[1:] if stamp > trained_until[row["series"]]]
        assert scored == expected and scored  # exactly the steps after the training windows, the first excepted
    assert counts == {"a": 6, "b": 3}  # shares 26:16 of 9, largest remainder first
    # the last 6 and 3 steps of 2021-01..2023-06 and 2021-01..2022-08 (`datasets` reads the ISO stamps as times)
    assert trained_until == {"a": "2022-12-01 00:00:00", "b": "2022-05-01 00:00:00"}


def test_held_out_windows_with_past_covariates_score_only_unseen_steps(tmp_path, tokenizer):
    """With known and past-only covariates a step is <x><y><p> in the history and <x><y> in the forecast part: the
    held-out windows still score exactly the targets of the steps after the training windows."""
    from test_loader import load

    df = table(30, ids=("a",))
    from_dataframe(df, "item_id", "timestamp", ["sales"], known_covariates=["promo"], past_covariates=["price"],
                   context_length=3, prediction_length=2, out_dir=str(tmp_path), name="shop", stride=1)
    module = load(tokenizer, tmp_path, dataset="shop", val_size=0.2, condition_streams="x", past_streams="p",
                  embedding_dim={"x": 1, "y": 1, "p": 1})
    train, held = module.train_dataset, module.eval_dataset
    trained_until = max(stamps[-1] for stamps in train["timestamps"])
    assert len(held) == 6
    for row in held:
        stamps, keys = row["timestamps"], row["group_keys"]
        assert [k[0] for k in keys] == list("xyp" * 3 + "xy" * 2)
        step_of = np.cumsum([key.startswith("x") for key in keys]) - 1  # a step opens at its known covariate
        scored = [stamps[step_of[g]] for g, is_target in zip(row["embedding_groups"], row["embedding_is_target"])
                  if is_target]
        expected = [stamp for stamp in stamps[1:] if stamp > trained_until]
        assert scored == expected and scored


def test_rows_that_are_not_windows_of_series_split_as_before():
    from datasets import Dataset

    from wmfactory.data.splits import time_split

    assert time_split(Dataset.from_dict({"row_index": [0, 1, 2]}), 1) is None
    mixed = Dataset.from_dict({"series": ["a", "", "a"], "timestamps": [["1", "2"], [], ["2", "3"]]})
    assert time_split(mixed, 1) is None  # a row without its series: no time order for every row
    numbers = Dataset.from_dict({"series": ["s"] * 4, "timestamps": [["9", "10"], ["10", "11"], ["2", "3"],
                                                                      ["11", "12"]]})
    split = time_split(numbers, 1)  # numeric stamps compare as numbers, not text ("10" after "9")
    assert split.held == [3] and split.seen == [1] and split.train == [0, 1, 2]
