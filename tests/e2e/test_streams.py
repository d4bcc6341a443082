"""Streams of different dimensions and condition streams: a state s (2) and an action a (3) alternate; actions are
inputs only, in training, teacher-forced prediction, generation and rollouts."""

import json

import numpy as np
import pytest
import torch
from conftest import train_args, write_controlled_dataset

from wmfactory import WorldModel
from wmfactory.data.collator import WorldModelDataCollator
from wmfactory.extras.errors import ConfigError, DataError
from wmfactory.inference import context_features, generate_groups
from wmfactory.train.tuner import run_exp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streams")
    data_dir = write_controlled_dataset(tmp / "data")
    run_exp(train_args(tmp / "out", data_dir, dataset="control", condition_streams="a", max_steps=6,
                       learning_rate=5e-3, embedding_norm="standard", lm_loss_weight=0))
    rows = json.loads((tmp / "data" / "control.json").read_text())
    return tmp, WorldModel.from_pretrained(str(tmp / "out")), rows


def test_each_stream_has_its_own_parts_and_actions_are_never_targets(trained):
    tmp, model, rows = trained
    assert model.config.streams == {"a": 3, "s": 2} and model.config.embedding_dim == 3
    assert model.config.predicted_streams == ["s"]
    assert model.projector.a[0].in_features == 3 and model.projector.s[0].in_features == 2
    assert set(model.prediction_head.keys()) == {"s"}
    assert model.statistics.s.mean.shape == (2,) and model.statistics.a.mean.shape == (3,)
    # statistics fitted on each stream's own vectors
    states = np.concatenate([[np.load(tmp / "data" / row["embeddings"][f"s{t}"][0])[0] for t in range(1, 6)]
                             for row in rows])
    np.testing.assert_allclose(model.statistics.s.mean.numpy(), states.mean(axis=0), rtol=1e-4, atol=1e-5)

    features = model.encode_row(rows[0], str(tmp / "data"))
    assert features["embedding_streams"] == ["s", "a", "s", "a", "s", "a", "s", "a", "s"]
    assert features["embedding_is_target"] == [False, False, True, False, True, False, True, False, True]
    batch = WorldModelDataCollator(0, 3, ["a", "s"])([features])
    assert batch["embedding_streams"].tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert batch["embedding_vectors"].shape == (9, 3) and (batch["embedding_vectors"][0::2, 2] == 0).all()
    out = model(**batch)
    assert out.predicted_embeddings.shape == (4, 3) and (out.predicted_embeddings[:, 2] == 0).all()
    groups = model.predict_next(rows[0], str(tmp / "data"))
    assert [g.stream for g in groups] == ["s"] * 4 and groups[0].predicted.shape == (1, 2)
    np.testing.assert_allclose(np.concatenate([g.predicted for g in groups]), out.predicted_embeddings[:, :2],
                               rtol=1e-4, atol=1e-5)


def test_rollout_under_given_actions_equals_generation_with_the_rows_actions(trained):
    tmp, model, rows = trained
    data_dir = str(tmp / "data")
    features = model.encode_row(rows[1], data_dir)
    generated = generate_groups(model, features, context_groups=2)  # s1 and a1 given; a2, a3, a4 given from the row
    assert [g.key for g in generated] == ["s2", "s3", "s4", "s5"]
    actions = np.stack([np.load(tmp / "data" / rows[1]["embeddings"][f"a{t}"][0])[0] for t in (2, 3, 4)])
    context = dict(dataset_dir=data_dir, context_groups=2)  # the row up to s2: s1 and a1 given
    rolled = model.rollout(rows[1], steps=4, **context, conditions={"a": actions})
    assert rolled.shape == (4, 2)
    np.testing.assert_allclose(rolled, np.concatenate([g.predicted for g in generated]), rtol=1e-4, atol=1e-5)
    # the actions steer the rollout
    other = model.rollout(rows[1], steps=4, **context, conditions={"a": -actions})
    assert np.abs(other[1:] - rolled[1:]).max() > 1e-4
    np.testing.assert_allclose(other[0], rolled[0], rtol=1e-5)  # s2 comes before any given action
    draws = model.rollout(rows[1], steps=2, **context, conditions={"a": actions}, num_samples=3, seed=0)
    assert draws.shape == (3, 2, 2)


def test_rollout_conditions_are_checked(trained):
    tmp, model, rows = trained
    data_dir = str(tmp / "data")
    row = ("control", 0)
    with pytest.raises(DataError, match="beyond the 1 given"):
        model.rollout(row, steps=3, dataset_dir=data_dir, conditions={"a": np.zeros((1, 3))})
    with pytest.raises(DataError, match=r"shape \[k, 3\]"):
        model.rollout(row, steps=1, dataset_dir=data_dir, conditions={"a": np.zeros((2, 2))})
    with pytest.raises(DataError, match="not a condition stream"):
        model.rollout(row, steps=1, dataset_dir=data_dir, conditions={"s": np.zeros((2, 2))})
    # the row ends with s5: the pattern continues a, s, a, s, ...; an explicit pattern is taken as given
    assert model.rollout(row, steps=2, dataset_dir=data_dir, conditions={"a": np.zeros((2, 3))}).shape == (2, 2)
    with pytest.raises(DataError, match="pattern"):
        model.rollout(row, steps=1, dataset_dir=data_dir, pattern=["a"], conditions={"a": np.zeros((5, 3))})


def test_a_stream_of_inconsistent_dimension_is_named(tmp_path):
    data_dir = write_controlled_dataset(tmp_path / "data", rows=4)
    rows = json.loads((tmp_path / "data" / "control.json").read_text())
    with pytest.raises(DataError, match="matches none"):
        run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="u"))
    with pytest.raises(DataError, match="nothing to predict"):
        run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="a,s"))
    with pytest.raises(DataError, match="nothing to predict"):  # a past-only stream predicts nothing either
        run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="a", past_streams="s"))
    with pytest.raises(DataError, match=r"`past_streams`: 'q' matches none of the data's streams \['a', 's'\]"):
        run_exp(train_args(tmp_path / "out", data_dir, dataset="control", past_streams="q"))
    with pytest.raises(ConfigError, match=r"\['a'\] are in both `condition_streams` and `past_streams`"):
        run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="a", past_streams="a"))
    np.save(tmp_path / "data" / rows[2]["embeddings"]["a3"][0], np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"row 2, key 'a3'.*stream 'a'"):
        run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="a"))
    with pytest.raises(DataError, match=r"`embedding_dim` is 5 for stream 's'"):
        run_exp(train_args(tmp_path / "out", data_dir, dataset="control", embedding_dim={"s": 5}))


def test_padding_of_narrow_streams_does_not_leak_into_the_loss(trained):
    """The state stream (2) is padded to the batch width (3, the action's): its loss is the mean squared error of
    its 2 real dimensions in its own normalisation, computed here by hand, and noise in the padded lane changes
    nothing."""
    tmp, model, rows = trained
    batch = WorldModelDataCollator(0, 3, ["a", "s"])([model.encode_row(row, str(tmp / "data")) for row in rows[:3]])
    states = batch["embedding_streams"] == 1
    assert states.any() and (~states).any() and (batch["embedding_vectors"][states, 2] == 0).all()
    with torch.no_grad():
        out = model(**batch)
        noisy = {**batch, "embedding_vectors": batch["embedding_vectors"].clone()}
        noisy["embedding_vectors"][states, 2] = 1e3 * torch.randn(int(states.sum()))
        out_noisy = model(**noisy)
    targets = batch["embedding_vectors"][batch["embedding_is_target"]][:, :2]
    stats = model.statistics.s
    expected = (((out.predicted_embeddings[:, :2] - targets) / stats.scale) ** 2).mean()
    assert out.embedding_loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert torch.equal(out_noisy.embedding_loss, out.embedding_loss)
    torch.testing.assert_close(out_noisy.predicted_embeddings, out.predicted_embeddings)


def test_eval_scores_the_state_stream_with_baselines_inside_it(trained, capsys):
    from wmfactory.commands.evaluate import run_eval
    from wmfactory.commands.predict import read_predictions, run_predict

    tmp, model, rows = trained
    keys = {"model_name_or_path": str(tmp / "out"), "dataset": "control", "dataset_dir": str(tmp / "data"),
            "context_groups": 2}
    report = run_eval({**keys, "output_dir": str(tmp / "eval")})
    assert list(report["streams"]) == ["s"] and report["teacher_forced"] == report["streams"]["s"]["teacher_forced"]
    assert "== stream 's'" in capsys.readouterr().out
    # horizons count the state groups: s2 .. s5 after s1 and a1 are given
    assert sorted(report["rollout"]["horizons"]) == ["1", "2", "3", "4"]
    block = report["rollout"]["horizons"]["2"]
    # the baselines need 2 known states before the origin: with only s1 given, every vector is excluded
    assert block["vectors"] == 0 and block["excluded_vectors"] == len(rows)
    late = run_eval({**keys, "context_groups": 6, "output_dir": str(tmp / "eval6")})  # s1 a1 s2 a2 s3 a3 given
    h1 = late["rollout"]["horizons"]["1"]  # s4 from s3
    expected = np.mean([np.mean((np.load(tmp / "data" / r["embeddings"]["s4"][0])[0]
                                 - np.load(tmp / "data" / r["embeddings"]["s3"][0])[0]) ** 2) for r in rows])
    assert h1["vectors"] == len(rows) and h1["persistence"]["mse"] == pytest.approx(expected, rel=1e-5)
    path = run_predict({**keys, "output_dir": str(tmp / "pred"), "predict_mode": "rollout"})
    lines = list(read_predictions(path))
    assert {line["key"][0] for line in lines} == {"s"} and lines[0]["predicted"].shape == (1, 2)


def test_rows_of_two_streams_in_one_batch_predict_what_each_predicts_alone(trained):
    from wmfactory.inference import generate_rows, teacher_forced, teacher_forced_rows

    tmp, model, rows = trained
    features = [model.encode_row(row, str(tmp / "data")) for row in rows[:5]]
    features[1] = context_features(features[1], 5)  # a shorter row: s1 a1 s2 a2 s3
    pairs = [(teacher_forced_rows(model, features), [teacher_forced(model, f) for f in features])]
    for context in (1, 4):
        pairs.append((generate_rows(model, features, context), [generate_groups(model, f, context) for f in features]))
    for batched, alone in pairs:
        for row_batched, row_alone in zip(batched, alone):
            assert [(g.key, g.horizon) for g in row_batched] == [(g.key, g.horizon) for g in row_alone]
            assert {g.stream for g in row_alone} <= {"s"} and row_alone
            for b, a in zip(row_batched, row_alone):
                np.testing.assert_allclose(b.predicted, a.predicted, rtol=1e-5, atol=1e-5)


def test_rollouts_of_several_rows_under_given_actions_equal_each_alone(trained):
    tmp, model, rows = trained
    torques = np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3)
    keys = {"steps": 3, "dataset_dir": str(tmp / "data"), "conditions": {"a": torques}}
    short = {"messages": [{"role": "user", "content": "<s1><a1><s2>"}, {"role": "assistant", "content": "ok"}],
             "embeddings": {key: rows[0]["embeddings"][key] for key in ("s1", "a1", "s2")}}
    batch = [rows[1], short, rows[2]]  # 9 and 3 groups: each continues a (given) s a s a s
    together = model.rollout(batch, **keys)
    assert [r.shape for r in together] == [(3, 2)] * 3
    for row, batched in zip(batch, together):
        np.testing.assert_allclose(batched, model.rollout(row, **keys), rtol=1e-5, atol=1e-5)
