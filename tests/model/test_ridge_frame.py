"""`predict_residual: ridge`: before training the model's forecast is the ridge regression's (fitted on the training
split, on as many vectors as precede, up to `ridge_history`), teacher-forced, in generated groups and in rollouts;
training starts there."""

import json

import numpy as np
import pytest
from conftest import train_args, write_dynamics_dataset

from wmfactory import WorldModel
from wmfactory.eval.metrics import ridge_path
from wmfactory.inference import generate_groups
from wmfactory.train.tuner import run_exp


@pytest.mark.parametrize("head", ["mlp", "mixture"])
def test_an_untrained_head_forecasts_what_the_ridge_regression_forecasts(tmp_path, head):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=16, steps=6)
    # learning rate 1e-12: the weights stay as built (to 1e-12), the statistics and the ridge are fitted on the data
    # history 2 and penalty 1e-3 fixed (`ridge_select: false`): the frame is checked against the normal equations
    run_exp(train_args(tmp_path / "out", data_dir, predict_residual="ridge", prediction_head_type=head,
                       learning_rate=1e-12, max_steps=1, calibrate_temperature=False, ridge_select=False,
                       ridge_history=2))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert model.config.predict_residual == "ridge"
    weights = model.statistics.m.ridge.double().numpy()
    assert np.abs(weights).sum() > 0
    rows = json.loads((tmp_path / "data" / "dynamics.json").read_text())
    row = rows[3]
    truth = np.concatenate([json.loads((tmp_path / "data" / row["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                            for t in range(1, 7)])  # [6, 4]
    groups = model.predict_next(row, str(tmp_path / "data"))
    # m2 has one vector before it (fewer than ridge_history = 2): the ridge on the last 1; m3 onwards: on the last 2
    one = model.statistics.m.ridge_1.double().numpy()
    # fitted on every training transition, from the last vector alone: the normal equations by hand (penalty 1e-3
    # times the number of transitions times each feature's variance, the intercept not shrunk)
    streams = [np.concatenate([json.loads((tmp_path / "data" / r["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                               for t in range(1, 7)]) for r in rows]
    x = np.concatenate([np.c_[s[:-1], np.ones(len(s) - 1)] for s in streams])
    y = np.concatenate([s[1:] for s in streams])
    penalty = np.diag(np.append(1e-3 * len(x) * x[:, :-1].var(axis=0), 0.0))
    np.testing.assert_allclose(one, np.linalg.solve(x.T @ x + penalty, x.T @ y), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(groups[0].predicted[0], ridge_path(one, truth[:1], 1)[-1], rtol=1e-4, atol=1e-5)
    for group, t in zip(groups[1:], range(2, 6)):
        expected = ridge_path(weights, truth[t - 2: t], 1)[-1]
        np.testing.assert_allclose(group.predicted[0], expected, rtol=1e-4, atol=1e-5)
    rolled = model.rollout(row, steps=3, dataset_dir=str(tmp_path / "data"), context_groups=3)
    np.testing.assert_allclose(rolled, ridge_path(weights, truth[1:3], 3), rtol=1e-4, atol=1e-5)
    generated = generate_groups(model, model.encode_row(row, str(tmp_path / "data")), context_groups=2)
    np.testing.assert_allclose(np.concatenate([g.predicted for g in generated]), ridge_path(weights, truth[:2], 4),
                               rtol=1e-4, atol=1e-5)


def test_predict_residual_takes_true_false_or_ridge():
    from wmfactory.extras.errors import ConfigError
    from wmfactory.hparams import WorldModelArguments

    assert WorldModelArguments(predict_residual="Ridge").predict_residual == "ridge"
    assert WorldModelArguments(predict_residual="false").predict_residual is False
    with pytest.raises(ConfigError, match="true, false or ridge"):
        WorldModelArguments(predict_residual="lasso")


def test_with_a_condition_stream_the_ridge_frame_reads_the_last_conditions_too(tmp_path):
    """s_{t+1} = A s_t + B a_t: a frame on past states alone cannot forecast it, one that reads the actions can. The
    frame's ridges are fitted on [s_{t-1}, .., s_{t-j}, a_{t-1}, .., a_{t-j}, 1], checked against the normal
    equations by hand, teacher-forced, generated under the row's actions, and rolled out under given actions."""
    from conftest import write_controlled_dataset

    data_dir = write_controlled_dataset(tmp_path / "data", rows=12)
    run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="a", predict_residual="ridge",
                       learning_rate=1e-12, max_steps=1, ridge_select=False, ridge_history=2))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert model.config.ridge_conditions and model.config.frame_conditions == [("a", 3)]
    rows = json.loads((tmp_path / "data" / "control.json").read_text())

    def vectors(row, key, n):
        return np.concatenate([np.load(tmp_path / "data" / row["embeddings"][f"{key}{t}"][0]) for t in range(1, n + 1)])

    def features(s, a, t, j):  # what forecasts s[t]: the j states and j actions before it, most recent first
        return np.concatenate([s[t - j:t][::-1].ravel(), a[t - j:t][::-1].ravel(), [1.0]])

    def fit(j):
        x = np.array([features(vectors(r, "s", 5), vectors(r, "a", 4), t, j) for r in rows for t in range(j, 5)])
        y = np.array([vectors(r, "s", 5)[t] for r in rows for t in range(j, 5)])
        penalty = np.diag(np.append(1e-3 * len(x) * x[:, :-1].var(axis=0), 0.0))
        return np.linalg.solve(x.T @ x + penalty, x.T @ y)

    one, two = fit(1), fit(2)
    np.testing.assert_allclose(model.statistics.s.frame_ridge_1.double().numpy(), one, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.statistics.s.frame_ridge_2.double().numpy(), two, rtol=1e-4, atol=1e-6)
    row = rows[0]
    s, a = vectors(row, "s", 5), vectors(row, "a", 4)
    expected = [features(s, a, 1, 1) @ one] + [features(s, a, t, 2) @ two for t in range(2, 5)]
    groups = model.predict_next(row, str(tmp_path / "data"))  # s2 .. s5
    np.testing.assert_allclose(np.concatenate([g.predicted for g in groups]), expected, rtol=1e-4, atol=1e-5)
    # the linear system is what the frame fits: before training the forecasts are within the penalty's shrinkage
    assert np.abs(np.asarray(expected) - s[1:]).max() < 0.05
    # generated after s1 a1 s2 a2 (the actions of the row given): s3 from the true s2, s1; s4 from the forecast s3
    generated = generate_groups(model, model.encode_row(row, str(tmp_path / "data")), context_groups=4)
    path = s[:2].copy()
    for t in range(2, 5):
        path = np.concatenate([path, (features(path, a, t, 2) @ two)[None]])
    np.testing.assert_allclose(np.concatenate([g.predicted for g in generated if g.stream == "s"]), path[2:],
                               rtol=1e-4, atol=1e-5)
    rolled = model.rollout(row, steps=3, dataset_dir=str(tmp_path / "data"), context_groups=4,
                           conditions={"a": a[2:4]})  # a3, a4 after the forecasts s3, s4
    np.testing.assert_allclose(rolled, path[2:], rtol=1e-4, atol=1e-5)
    # eval's `ridge_conditions` baseline is that ridge: teacher-forced s3..s5 (each with two states before it), and
    # rolled out from s1 a1 s2 a2 under the row's actions; the plain ridge, blind to the actions, does worse
    from wmfactory.eval.report import evaluate_rows

    report = evaluate_rows(model, [model.encode_row(r, str(tmp_path / "data")) for r in rows], context_groups=4)
    forced, errors, rolled_errors = report["teacher_forced"], [], {1: [], 2: [], 3: []}
    for r in rows:
        s, a = vectors(r, "s", 5), vectors(r, "a", 4)
        errors += [((features(s, a, t, 2) @ two - s[t]) ** 2).mean() for t in range(2, 5)]
        path = s[:2].copy()
        for t in range(2, 5):
            path = np.concatenate([path, (features(path, a, t, 2) @ two)[None]])
            rolled_errors[t - 1].append(((path[t] - s[t]) ** 2).mean())
    assert forced["ridge_conditions"]["mse"] == pytest.approx(np.mean(errors), rel=1e-4)
    assert forced["model"]["mse"] == pytest.approx(np.mean(errors), rel=1e-3)  # untrained: the model is its frame
    assert forced["ridge"]["mse"] > 2 * forced["ridge_conditions"]["mse"]
    for h in (1, 2, 3):  # rollouts from s1 a1 s2 a2: s3, s4, s5
        assert report["rollout"]["horizons"][str(h)]["ridge_conditions"]["mse"] == pytest.approx(
            np.mean(rolled_errors[h]), rel=1e-4)


def test_eval_rollout_mse_scores_rollouts_of_the_evaluation_rows(tmp_path):
    """`eval_rollout_steps: 3`: the targets m2..m6 of each row are tiled into windows (m2 m3 m4 after m1; m5 m6 after
    the true m1..m4), each rolled out from its own forecasts. Before training the model is its ridge frame (history
    1), so the rollouts are computed here by iterating the saved ridge weights."""
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8, steps=6)
    run_exp(train_args(tmp_path / "out", data_dir, predict_residual="ridge", learning_rate=1e-12, max_steps=1,
                       ridge_select=False, ridge_history=1, ridge_lambda=0.1, eval_dataset="dynamics", do_eval=True,
                       eval_rollout_steps=3))
    metrics = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    weights = model.statistics.m.ridge.double().numpy()
    rows = json.loads((tmp_path / "data" / "dynamics.json").read_text())
    truth = [np.concatenate([json.loads((tmp_path / "data" / r["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                             for t in range(1, 7)]) for r in rows]
    rollout, one_step = [], []
    for x in truth:
        one_step.append(((np.c_[x[:-1], np.ones(5)] @ weights - x[1:]) ** 2).mean(axis=1))
        for given, steps in ((1, 3), (4, 2)):
            forecast = ridge_path(weights, x[given - 1: given], steps)
            rollout.append(((forecast - x[given: given + steps]) ** 2).mean(axis=1))
    rollout, one_step = np.concatenate(rollout).mean(), np.concatenate(one_step).mean()
    assert rollout > 1.2 * one_step  # the penalty's shrinkage compounds along a rollout
    np.testing.assert_allclose(metrics["eval_mse"], one_step, rtol=1e-3)
    np.testing.assert_allclose(metrics["eval_rollout_mse"], rollout, rtol=1e-3)


def test_a_still_history_is_forecast_exactly_with_the_increments_frame_and_the_local_step(tmp_path):
    """`frame_form: increments` with `frame_step: local`: after training, a history that holds still is forecast as
    itself in every rollout step (what MASE rewards), while a moving one is the frame plus the trained head's step."""
    from conftest import write_embedding

    data_dir = write_dynamics_dataset(tmp_path / "data", rows=24, steps=6)
    run_exp(train_args(tmp_path / "out", data_dir, predict_residual="ridge", frame_form="increments",
                       frame_step="local", learning_rate=1e-2, max_steps=20, ridge_history=3))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert (model.config.frame_form, model.config.frame_step) == ("increments", "local")
    still = np.array([0.75, -1.5, 2.0, 0.125], dtype=np.float32)
    row = {"messages": [{"role": "user", "content": "Days so far: <m1><m2><m3>"},
                        {"role": "assistant", "content": "Next: <m4>"}],
           "embeddings": {f"m{t}": [write_embedding(tmp_path / "data" / f"still_{t}.json", still)]
                          for t in (1, 2, 3, 4)}}
    rolled = model.rollout(row, steps=4, dataset_dir=str(tmp_path / "data"), context_groups=3)
    np.testing.assert_allclose(rolled, np.tile(still, (4, 1)), rtol=0, atol=1e-6)
    # a moving history: the head's step is not zero, so the forecast is not the frame's alone
    rows = json.loads((tmp_path / "data" / "dynamics.json").read_text())
    moving = model.rollout(rows[0], steps=2, dataset_dir=str(tmp_path / "data"), context_groups=3)
    frame = model.statistics.m.frame_ridge_on(3).double().numpy()
    truth = np.concatenate([json.loads((tmp_path / "data" / rows[0]["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                            for t in (1, 2, 3)])
    assert np.abs(moving[0] - ridge_path(frame, truth, 1)[-1]).max() > 1e-4


def test_frame_form_and_frame_step_are_refused_where_they_do_not_apply():
    from wmfactory.extras.errors import ConfigError
    from wmfactory.hparams import WorldModelArguments

    with pytest.raises(ConfigError, match="need `predict_residual: ridge`"):
        WorldModelArguments(predict_residual=True, frame_form="increments")
    with pytest.raises(ConfigError, match="deterministic heads"):
        WorldModelArguments(frame_step="local", prediction_head_type="mixture")
    with pytest.raises(ConfigError, match="auto, levels or increments"):
        WorldModelArguments(frame_form="differences")
    assert WorldModelArguments(frame_form="increments", frame_step="local").frame_step == "local"


def test_frame_auto_resolves_per_head_and_configurations_without_the_keys_keep_the_old_frame():
    """The defaults (`auto`) resolve when a model is made: the step is local with the mlp and linear heads, global
    with the distributional ones (never refused), and without the ridge frame nothing changes; a config.json
    without the keys (saved before they existed, or at the values its diff leaves out) means levels, global."""
    from wmfactory.hparams import WorldModelArguments
    from wmfactory.hparams.world_model_args import resolve_frame
    from wmfactory.model.config import WorldModelConfig

    assert resolve_frame(WorldModelArguments()) == ("auto", "local")
    assert resolve_frame(WorldModelArguments(prediction_head_type="linear")) == ("auto", "local")
    for head in ("mixture", "diffusion", "quantile"):
        assert resolve_frame(WorldModelArguments(prediction_head_type=head)) == ("auto", "global")
    assert resolve_frame(WorldModelArguments(predict_residual=True)) == ("levels", "global")
    assert resolve_frame(WorldModelArguments(ridge_select=False)) == ("levels", "local")
    assert resolve_frame(WorldModelArguments(frame_form="increments", frame_step="global")) == ("increments", "global")
    text = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2, "intermediate_size": 16, "vocab_size": 32}
    made = WorldModelConfig.from_arguments(WorldModelArguments(), text, 4)
    assert (made.frame_form, made.frame_step) == ("auto", "local")
    old = WorldModelConfig(text_config=text, embedding_dim=4)
    assert (old.frame_form, old.frame_step) == ("levels", "global")
    for config in (made, WorldModelConfig.from_arguments(WorldModelArguments(frame_step="global"), text, 4)):
        again = WorldModelConfig.from_dict(config.to_diff_dict())
        assert (again.frame_form, again.frame_step) == (config.frame_form, config.frame_step)
