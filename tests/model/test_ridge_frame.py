"""`predict_residual: ridge`: before training the model's forecast is the ridge regression's (fitted on the training
split, on as many vectors as precede, up to `ridge_history`), teacher-forced, in generated groups and in rollouts;
training starts there."""

import json

import numpy as np
import pytest
from conftest import train_args, write_dynamics_dataset

from wmfactory import WorldModel
from wmfactory.eval.metrics import ridge_path
from wmfactory.model.generation import generate_groups
from wmfactory.train.tuner import run_exp


@pytest.mark.parametrize("head", ["mlp", "mixture"])
def test_an_untrained_head_forecasts_what_the_ridge_regression_forecasts(tmp_path, head):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=16, steps=6)
    # learning rate 1e-12: the weights stay as built (to 1e-12), the statistics and the ridge are fitted on the data
    run_exp(train_args(tmp_path / "out", data_dir, predict_residual="ridge", prediction_head_type=head,
                       learning_rate=1e-12, max_steps=1, calibrate_temperature=False))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert model.config.predict_residual == "ridge"
    weights = model.statistics.ridge.double().numpy()
    assert np.abs(weights).sum() > 0
    rows = json.loads((tmp_path / "data" / "dynamics.json").read_text())
    row = rows[3]
    truth = np.concatenate([json.loads((tmp_path / "data" / row["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                            for t in range(1, 7)])  # [6, 4]
    groups = model.predict_next(row, str(tmp_path / "data"))
    # m2 has one vector before it (fewer than ridge_history = 2): the ridge on the last 1; m3 onwards: on the last 2
    one = model.statistics.ridge_1.double().numpy()
    # fitted on every training transition, from the last vector alone: the normal equations by hand (penalty 1e-3
    # times the number of transitions, the intercept not shrunk)
    streams = [np.concatenate([json.loads((tmp_path / "data" / r["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                               for t in range(1, 7)]) for r in rows]
    x = np.concatenate([np.c_[s[:-1], np.ones(len(s) - 1)] for s in streams])
    y = np.concatenate([s[1:] for s in streams])
    penalty = 1e-3 * len(x) * np.eye(5)
    penalty[-1, -1] = 0
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


def test_with_a_condition_stream_the_ridge_runs_on_the_states_alone(tmp_path):
    from conftest import write_controlled_dataset

    data_dir = write_controlled_dataset(tmp_path / "data", rows=12)
    run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="a", predict_residual="ridge",
                       learning_rate=1e-12, max_steps=1))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    row = json.loads((tmp_path / "data" / "control.json").read_text())[0]
    states = np.concatenate([np.load(tmp_path / "data" / row["embeddings"][f"s{t}"][0]) for t in range(1, 6)])
    weights = model.statistics.s.ridge.double().numpy()
    groups = model.predict_next(row, str(tmp_path / "data"))  # s2 .. s5
    one = model.statistics.s.ridge_1.double().numpy()  # one state before s2: the ridge on the last state
    np.testing.assert_allclose(groups[0].predicted[0], ridge_path(one, states[:1], 1)[-1], rtol=1e-4, atol=1e-5)
    for group, t in zip(groups[1:], range(2, 5)):
        np.testing.assert_allclose(group.predicted[0], ridge_path(weights, states[t - 2: t], 1)[-1], rtol=1e-4,
                                   atol=1e-5)
