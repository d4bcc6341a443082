"""The built-in closed-loop environment is gymnasium's Pendulum-v1 (its equations written out here by hand)."""

import math

import numpy as np
import pytest
import torch

from wmfactory.extras.errors import DataError
from wmfactory.inference.environments import Pendulum, make_environment, run_policy


def test_pendulum_follows_pendulum_v1():
    env = Pendulum()
    state = env.reset(3)
    theta, speed = math.atan2(state[1], state[0]) % (2 * math.pi), 0.0
    assert abs(theta - math.pi) <= 0.2 and state[2] == 0.0
    for torque in (1.5, -3.0, 0.25):  # -3 is clipped to -2
        u = max(-2.0, min(2.0, torque))
        angle = (theta + math.pi) % (2 * math.pi) - math.pi
        want_cost = angle ** 2 + 0.1 * speed ** 2 + 0.001 * u ** 2
        speed = max(-8.0, min(8.0, speed + (3 * 10 / (2 * 1) * math.sin(theta) + 3 / (1 * 1 ** 2) * u) * 0.05))
        theta = theta + speed * 0.05
        state, cost = env.step(np.array([torque]))
        np.testing.assert_allclose(state, [math.cos(theta), math.sin(theta), speed], rtol=1e-6, atol=1e-6)
        assert cost == pytest.approx(want_cost, rel=1e-6)


def test_the_planner_cost_is_the_step_cost_of_predicted_states():
    env = Pendulum()
    thetas, speeds, torques = torch.tensor([[0.3, -2.0]]), torch.tensor([[1.0, 0.5]]), torch.tensor([[[0.5], [3.0]]])
    states = torch.stack([thetas.cos(), thetas.sin(), speeds], -1)
    want = sum(((t + math.pi) % (2 * math.pi) - math.pi) ** 2 + 0.1 * s ** 2 + 0.001 * min(u, 2.0) ** 2
               for t, s, u in [(0.3, 1.0, 0.5), (-2.0, 0.5, 3.0)])
    assert float(env.cost(states, torques)[0]) == pytest.approx(want, rel=1e-5)


def test_run_policy_and_unknown_environments():
    run = run_policy(Pendulum(), lambda states, actions: [0.0], steps=5, seed=0)
    assert run.states.shape == (6, 3) and run.actions.shape == (5, 1) and run.total == pytest.approx(run.costs.sum())
    with pytest.raises(DataError, match="no environment 'cartpole'.*pendulum"):
        make_environment("cartpole")
