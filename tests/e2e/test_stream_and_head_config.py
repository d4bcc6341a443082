"""Bad stream, condition and distributional-head configuration: one clear error each, before anything is
allocated; a row holding only a condition stream trains (its text), and nothing else changes."""

import json

import pytest
from conftest import train_args, write_controlled_dataset, write_dataset

from wmfactory import WorldModel
from wmfactory.extras.errors import ConfigError, DataError
from wmfactory.hparams.parser import get_predict_args, get_train_args
from wmfactory.train.tuner import run_exp


@pytest.fixture()
def control(tmp_path):
    data_dir = write_controlled_dataset(tmp_path / "data", rows=4)
    return tmp_path, data_dir, json.loads((tmp_path / "data" / "control.json").read_text())


def test_a_stream_named_in_embedding_dim_but_absent_from_the_data(control):
    tmp, data_dir, _ = control
    with pytest.raises(DataError, match=r"`embedding_dim` names stream\(s\) \['x'\] that the data does not hold"):
        run_exp(train_args(tmp / "out", data_dir, dataset="control", condition_streams="a",
                           embedding_dim={"s": 2, "a": 3, "x": 5}))


@pytest.mark.parametrize("given", ["s=2,s=3,a=3", '{"s": 2, "s": 3}'])
def test_one_stream_given_two_dimensions_is_refused(tmp_path, given):
    with pytest.raises(ConfigError, match="`embedding_dim` gives stream 's' twice"):
        get_train_args({**train_args(tmp_path / "out", tmp_path), "embedding_dim": given})


def test_a_condition_never_followed_by_a_state(control):
    tmp, data_dir, rows = control
    ending = [{"messages": [{"role": "user", "content": "<s1><s2><a1>"}, {"role": "assistant", "content": "ok"}],
               "embeddings": {k: row["embeddings"][k] for k in ("s1", "s2", "a1")}} for row in rows]
    write_dataset(tmp / "data", "tail", ending)
    with pytest.raises(DataError, match=r"`condition_streams`: stream\(s\) \['a'\] are never followed by a vector "
                                        "of a predicted stream in any training row"):
        run_exp(train_args(tmp / "out", data_dir, dataset="tail", condition_streams="a"))


def test_a_row_holding_a_condition_stream_only_trains_on_its_text(control):
    """Row 0 holds two actions and no state (one width beside rows of two widths): it has no target vector."""
    tmp, data_dir, rows = control
    only = {"messages": [{"role": "user", "content": "<a1><a2>"}, {"role": "assistant", "content": "ok"}],
            "embeddings": {k: rows[0]["embeddings"][k] for k in ("a1", "a2")}}
    write_dataset(tmp / "data", "condonly", [only] + rows[1:])
    run_exp(train_args(tmp / "out", data_dir, dataset="condonly", condition_streams="a", max_steps=1))
    model = WorldModel.from_pretrained(str(tmp / "out"))
    assert model.config.streams == {"a": 3, "s": 2}
    first = model.encode_row(only, data_dir)
    assert first["embedding_streams"] == ["a", "a"] and first["embedding_is_target"] == [False, False]
    assert [len(v) for v in first["embedding_vectors"]] == [3, 3]
    state = json.loads((tmp / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and state["log_history"][0]["loss"] > 0


def test_every_stream_a_condition_leaves_nothing_to_predict(control):
    tmp, data_dir, _ = control
    with pytest.raises(DataError, match="nothing to predict"):
        run_exp(train_args(tmp / "out", data_dir, dataset="control", condition_streams="a,s"))


@pytest.mark.parametrize("key, value, message", [
    ("mixture_components", 0, "`mixture_components` and `diffusion_steps` must be at least 1"),
    ("mixture_components", 10**9, "`mixture_components` must be at most 1024, got 1000000000"),
    ("diffusion_steps", 0, "`mixture_components` and `diffusion_steps` must be at least 1"),
    ("diffusion_steps", 10**8, "`diffusion_steps` must be at most 10000"),
    ("sampling_temperature", 0, "`sampling_temperature` must be a positive finite number, got 0"),
    ("sampling_temperature", -1, "`sampling_temperature` must be a positive finite number, got -1"),
    ("sampling_temperature", "nan", "`sampling_temperature` must be a positive finite number, got nan"),
    ("sampling_temperature", "inf", "`sampling_temperature` must be a positive finite number, got inf"),
    ("missing_fill_steps", -1, "`missing_fill_steps` must be an integer from 0 to 1000, got -1"),
    ("missing_fill_steps", 10**6, "`missing_fill_steps` must be an integer from 0 to 1000, got 1000000"),
])
def test_distributional_head_keys_out_of_range(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        get_train_args({**train_args(tmp_path / "out", tmp_path), "prediction_head_type": "mixture", key: value})


@pytest.mark.parametrize("key, value, message", [
    ("num_samples", -1, "`num_samples` must be in [0, 100000]"),
    ("num_samples", 10**9, "`num_samples` must be in [0, 100000] (0: the mean only), got 1000000000"),
    ("temperature", 0, "`temperature` must be a positive finite number, got 0"),
    ("temperature", -0.5, "`temperature` must be a positive finite number, got -0.5"),
    ("temperature", "nan", "`temperature` must be a positive finite number, got nan"),
])
def test_sampling_keys_of_predict_out_of_range(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as caught:
        get_predict_args({"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path), key: value})
    assert message in str(caught.value)


@pytest.mark.parametrize("num_samples, temperature, message", [
    (0, None, "`num_samples` must be a positive integer (at most 100000), got 0"),
    (10**9, None, "`num_samples` must be a positive integer (at most 100000), got 1000000000"),
    (4, 0.0, "`temperature` must be a positive finite number, got 0.0"),
    (4, -1.0, "`temperature` must be a positive finite number, got -1.0"),
    (4, float("nan"), "`temperature` must be a positive finite number, got nan"),
    (4, float("inf"), "`temperature` must be a positive finite number, got inf"),
])
def test_sampling_from_python_out_of_range(num_samples, temperature, message):
    from wmfactory.inference.row_api import sampling_of as _sampling

    with pytest.raises(DataError) as caught:
        _sampling(num_samples, temperature, seed=0)
    assert message in str(caught.value)
