"""Planning by model-predictive control on a world model with an action stream: a state s (2) and an action a (3)
alternate (`<s1><a1>...<s5>`), the planner chooses the actions after the row."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import train_args, write_controlled_dataset

from wmfactory import WorldModel
from wmfactory.extras.errors import DataError
from wmfactory.inference.planning import shift_plan
from wmfactory.train.tuner import run_exp


GOAL = np.array([0.5, -0.25], dtype=np.float32)


def goal_cost(states: np.ndarray) -> float:
    """The built-in goal cost computed by hand: squared distance of every state to GOAL, summed."""
    return float(((states - GOAL) ** 2).sum())


def test_the_plans_cost_is_the_cost_of_a_rollout_under_its_actions(action_model):
    model, row, data_dir = action_model
    result = model.plan(row, horizon=4, goal=GOAL, low=-2.0, high=2.0, candidates=32, iterations=3, elites=4,
                        seed=0, dataset_dir=data_dir)
    assert result.actions.shape == (4, 3) and result.states.shape == (4, 2) and result.costs.shape == (3,)
    assert (result.actions >= -2).all() and (result.actions <= 2).all()
    alone = model.rollout(row, 4, dataset_dir=data_dir, conditions={"a": result.actions})
    np.testing.assert_allclose(result.states, alone, rtol=1e-5, atol=1e-6)
    assert result.cost == pytest.approx(goal_cost(alone), rel=1e-5)
    assert list(result.costs) == sorted(result.costs, reverse=True)  # the best never gets worse
    # better than the first iteration's mean (the midpoint of the bounds) and than random actions in the bounds
    middle = model.rollout(row, 4, dataset_dir=data_dir, conditions={"a": np.zeros((4, 3), np.float32)})
    assert result.cost <= goal_cost(middle)
    random = np.random.default_rng(1).uniform(-2, 2, size=(16, 4, 3)).astype(np.float32)
    random_costs = [goal_cost(model.rollout(row, 4, dataset_dir=data_dir, conditions={"a": a})) for a in random]
    assert result.cost < min(random_costs)


def test_a_plan_is_reproducible_under_its_seed_and_a_custom_cost_sees_data_units(action_model):
    model, row, data_dir = action_model
    seen = {}

    def cost(states, actions):
        seen["shapes"] = (tuple(states.shape), tuple(actions.shape))
        return (states[:, :, 0] - 3.0).abs().sum(1) + 0.01 * (actions ** 2).sum((1, 2))

    options = dict(horizon=3, cost=cost, low=[-1, -1, -1], high=[1, 1, 0.5], candidates=16, iterations=2,
                   elites=4, dataset_dir=data_dir)
    first, again = model.plan(row, seed=7, **options), model.plan(row, seed=7, **options)
    np.testing.assert_array_equal(first.actions, again.actions)
    assert first.cost == again.cost
    assert seen["shapes"] == ((16, 3, 2), (16, 3, 3))
    assert (first.actions[:, 2] <= 0.5).all()
    other = model.plan(row, seed=8, **options)
    assert not np.array_equal(first.actions, other.actions)
    alone = model.rollout(row, 3, dataset_dir=data_dir, conditions={"a": first.actions})
    by_hand = np.abs(alone[:, 0] - 3.0).sum() + 0.01 * (first.actions ** 2).sum()
    assert first.cost == pytest.approx(by_hand, rel=1e-5)


def test_mppi_and_a_warm_start(action_model):
    model, row, data_dir = action_model
    first = model.plan(row, horizon=4, goal=GOAL, low=-2, high=2, candidates=32, iterations=3, method="mppi",
                       seed=0, dataset_dir=data_dir)
    middle = model.rollout(row, 4, dataset_dir=data_dir, conditions={"a": np.zeros((4, 3), np.float32)})
    # the zero actions are one of MPPI's candidates; scored in a batch of candidates, their cost may differ from a
    # lone rollout's in the last float32 digits
    assert first.cost <= goal_cost(middle) * (1 + 1e-6)
    shifted = shift_plan(first.actions)
    np.testing.assert_array_equal(shifted, np.concatenate([first.actions[1:], first.actions[-1:]]))
    warm = model.plan(row, horizon=4, goal=GOAL, low=-2, high=2, candidates=8, iterations=1, seed=0,
                      warm_start=first.actions, dataset_dir=data_dir)
    assert warm.cost <= first.cost + 1e-6  # the warm start itself is a candidate


@pytest.mark.parametrize("options, message", [
    (dict(low=1.0, high=-1.0), "`low` must not exceed `high`"),
    (dict(horizon=5000), r"a plan of \d+ vectors after this row .* positions; the model has"),
    (dict(cost=lambda s, a: s.sum((1, 2))[:3], goal=None), r"one number per candidate future, shape \[8\]"),
    (dict(cost=lambda s, a: s.sum((1, 2)) * float("nan"), goal=None), "NaN or infinite"),
    (dict(action_stream="s"), "'s' is not a condition stream of this model"),
    (dict(goal=[1.0, 2.0, 3.0]), r"goal for stream 's' must be 2 numbers"),
    (dict(goal=None), "give exactly one of `cost`"),
    (dict(elites=9), r"`elites` \(9\) must be at most `candidates` \(8\)"),
    (dict(method="random"), "`method` must be 'cem' or 'mppi'"),
    (dict(warm_start=np.zeros((2, 3))), r"`warm_start` must be finite numbers of shape \[3, 3\]"),
])
def test_bad_plans_are_one_clear_error(action_model, options, message):
    model, row, data_dir = action_model
    arguments = dict(horizon=3, goal=GOAL, candidates=8, iterations=1, elites=2, seed=0, dataset_dir=data_dir)
    arguments.update(options)
    with pytest.raises(DataError, match=message):
        model.plan(row, **arguments)


def test_sampled_futures_score_a_candidate_by_their_mean_or_their_worst(tmp_path):
    data_dir = write_controlled_dataset(tmp_path / "data")
    run_exp(train_args(tmp_path / "out", data_dir, dataset="control", condition_streams="a", max_steps=4,
                       learning_rate=5e-3, lm_loss_weight=0, prediction_head_type="mixture"))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    row = json.loads((tmp_path / "data" / "control.json").read_text())[0]
    options = dict(horizon=3, goal=GOAL, candidates=8, iterations=1, seed=3, num_samples=6, dataset_dir=data_dir)
    mean = model.plan(row, **options)
    assert mean.state_samples.shape == (6, 3, 2) and np.ptp(mean.state_samples, axis=0).max() > 0
    np.testing.assert_allclose(mean.states, mean.state_samples.mean(0), rtol=1e-5, atol=1e-6)
    by_hand = np.mean([goal_cost(s) for s in mean.state_samples])
    assert mean.cost == pytest.approx(by_hand, rel=1e-5)
    # the same candidates and draws (one iteration, one seed): each candidate's worst half costs at least its mean
    worst = model.plan(row, risk="cvar", alpha=0.5, **options)
    costs = sorted(goal_cost(s) for s in worst.state_samples)
    assert worst.cost == pytest.approx(np.mean(costs[3:]), rel=1e-5)
    assert worst.cost >= mean.cost


def test_the_plan_command_writes_a_plan_per_row(action_model, tmp_path):
    from safetensors.numpy import load_file

    from wmfactory.cli import main

    model, row, data_dir = action_model
    np.save(tmp_path / "goal.npy", GOAL[None])
    folder = str(Path(data_dir).parent / "out")  # the fixture's training output
    out = tmp_path / "plans"
    status = main(["plan", "--model_name_or_path", folder, "--dataset", "control", "--dataset_dir", data_dir,
                   "--max_samples", "2", "--output_dir", str(out), "--goal", str(tmp_path / "goal.npy"),
                   "--horizon", "3", "--candidates", "16", "--iterations", "2", "--action_low", "-2",
                   "--action_high", "2,2,1", "--seed", "0"])
    assert status == 0
    records = [json.loads(line) for line in (out / "plans.jsonl").read_text().splitlines()]
    assert [r["row"] for r in records] == [0, 1] and records[0]["action_stream"] == "a"
    saved = load_file(str(out / records[0]["file"]))
    assert saved["actions"].shape == (3, 3) and saved["states"].shape == (3, 2) and saved["actions"][:, 2].max() <= 1
    alone = model.rollout(row, 3, dataset_dir=data_dir, conditions={"a": saved["actions"]})
    np.testing.assert_allclose(saved["states"], alone, rtol=1e-5, atol=1e-6)
    assert records[0]["cost"] == pytest.approx(goal_cost(alone), rel=1e-5)
    assert main(["plan", "--model_name_or_path", folder, "--dataset", "control", "--dataset_dir", data_dir,
                 "--output_dir", str(out), "--goal", str(tmp_path / "missing.npy")]) == 1
