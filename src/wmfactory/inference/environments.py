"""Closed-loop planning: the planner acts in a simulator one action at a time, re-planning from the history it has
lived through (model-predictive control). An environment is a small object (`Environment`); `pendulum` is built in
and `register_environment` adds others, which the board's Plan tab then offers."""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..extras.errors import DataError
from .planning import shift_plan


class Environment:
    """A simulator: `reset(seed)` gives the first state `[state_dim]`, `step(action [action_dim])` the next state and
    the step's cost, `cost(states [N, H, state_dim], actions [N, H', action_dim])` the planner's cost of predicted
    trajectories (torch, `[N]`). `low`/`high` bound the actions; `prompt` is the text before the vectors of a history
    row (the text the model was trained with)."""

    state_dim: int
    action_dim: int
    low: np.ndarray
    high: np.ndarray
    prompt: str = ""

    def reset(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def cost(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Pendulum(Environment):
    """gymnasium's Pendulum-v1 (g 10, m 1, l 1, dt 0.05, speed clipped at 8, torque at 2), started hanging down
    (angle pi + a small offset drawn from the seed) at rest; the state is (cos, sin, angular velocity), the action the
    torque, the cost the negative of Pendulum-v1's reward (angle^2 + 0.1 speed^2 + 0.001 torque^2), as
    `examples/control/make_pendulum_data.py` and `swing_up.py` write and use them."""

    state_dim, action_dim = 3, 1
    low, high = np.array([-2.0]), np.array([2.0])
    prompt = "A pendulum under torques: "

    def reset(self, seed: int) -> np.ndarray:
        self.theta = math.pi + float(np.random.default_rng(seed).uniform(-0.2, 0.2))
        self.speed = 0.0
        return self._state()

    def _state(self) -> np.ndarray:
        return np.array([math.cos(self.theta), math.sin(self.theta), self.speed], np.float32)

    @staticmethod
    def _step_cost(theta, speed, torque):
        angle = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
        return angle ** 2 + 0.1 * speed ** 2 + 0.001 * torque ** 2

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        torque = float(np.clip(np.asarray(action, np.float64).reshape(-1)[0], -2.0, 2.0))
        cost = float(self._step_cost(torch.tensor(self.theta), torch.tensor(self.speed), torch.tensor(torque)))
        self.speed = float(np.clip(self.speed + (15.0 * math.sin(self.theta) + 3.0 * torque) * 0.05, -8, 8))
        self.theta += self.speed * 0.05
        return self._state(), cost

    def cost(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        theta = torch.atan2(states[..., 1], states[..., 0])
        n = min(states.shape[1], actions.shape[1])
        return self._step_cost(theta[:, :n], states[:, :n, 2], actions[:, :n, 0].clamp(-2.0, 2.0)).sum(1)


ENVIRONMENTS: dict[str, Callable[[], Environment]] = {"pendulum": Pendulum}


def register_environment(name: str, factory: Callable[[], Environment]) -> None:
    """Make `factory()` (an `Environment`) available by `name` to `closed_loop` and the board's Plan tab."""
    if not name or not isinstance(name, str):
        raise ValueError(f"an environment needs a name, got {name!r}")
    ENVIRONMENTS[name] = factory


def make_environment(name: str) -> Environment:
    if name not in ENVIRONMENTS:
        raise DataError(f"no environment '{name}': the registered ones are {sorted(ENVIRONMENTS)} "
                        "(`wmfactory.inference.environments.register_environment` adds one).")
    return ENVIRONMENTS[name]()


@dataclass
class ClosedLoop:
    states: np.ndarray  # [steps + 1, state_dim]: the environment's states, the first one from reset
    actions: np.ndarray  # [steps, action_dim]: the actions taken
    costs: np.ndarray  # [steps]: the environment's cost of each step
    total: float  # their sum


def history_row(states: list, actions: list, state_stream: str, action_stream: str, context: int,
                prompt: str = "") -> dict:
    """The last `context` states and the actions between them as a row in the dataset format (vectors inline):
    `<s1><a1><s2>...<s{context}>`, with the streams' names as placeholder prefixes."""
    states = states[-context:]
    actions = actions[len(actions) - len(states) + 1:] if len(states) > 1 else []
    text, embeddings = "", {}
    for t, state in enumerate(states):
        key = f"{state_stream}{t + 1}"
        embeddings[key], text = [np.asarray(state, np.float32)[None]], text + f"<{key}>"
        if t < len(states) - 1:
            key = f"{action_stream}{t + 1}"
            embeddings[key], text = [np.asarray(actions[t], np.float32)[None]], text + f"<{key}>"
    return {"messages": [{"role": "user", "content": prompt + text}, {"role": "assistant", "content": ""}],
            "embeddings": embeddings}


def run_policy(env: Environment, policy: Callable[[list, list], np.ndarray], steps: int, seed: int) -> ClosedLoop:
    """`steps` steps of `policy(states, actions) -> action` from `env.reset(seed)`."""
    states, actions, costs = [env.reset(seed)], [], []
    for _ in range(steps):
        action = np.clip(np.asarray(policy(states, actions), np.float32).reshape(env.action_dim), env.low, env.high)
        state, cost = env.step(action)
        states.append(np.asarray(state, np.float32))
        actions.append(action.astype(np.float32))
        costs.append(float(cost))
    return ClosedLoop(np.stack(states), np.stack(actions) if actions else np.zeros((0, env.action_dim), np.float32),
                      np.asarray(costs), float(np.sum(costs)))


def closed_loop(model, env: Environment, steps: int, horizon: int = 10, context: int = 4, seed: int = 0,
                action_stream: Optional[str] = None, state_stream: Optional[str] = None, warm_start: bool = True,
                **plan_options) -> ClosedLoop:
    """Model-predictive control in `env`: at every step the last `context` states and actions are the row,
    `WorldModel.plan` (from the row's last vector, `pattern` action then state, the environment's cost and bounds,
    `plan_options` such as candidates, iterations, method) chooses the next `horizon` actions, the first is taken,
    and the loop plans again, warm-started with the previous plan shifted by one. The plan's seed is `seed` + step."""
    cfg = model.config
    conditions = cfg.given_streams
    action_stream = action_stream or (conditions[0] if len(conditions) == 1 else None)
    if action_stream not in conditions:
        raise DataError(f"name the `action_stream` among the model's condition streams {conditions}.")
    predicted = list(cfg.predicted_streams)
    state_stream = state_stream or (predicted[0] if len(predicted) == 1 else None)
    if state_stream not in predicted:
        raise DataError(f"name the `state_stream` among the model's predicted streams {predicted}.")
    for stream, want, what in ((state_stream, env.state_dim, "state"), (action_stream, env.action_dim, "action")):
        if cfg.stream_dims[stream] != want:
            raise DataError(f"the environment's {what}s have {want} dimension(s), the model's stream '{stream}' "
                            f"{cfg.stream_dims[stream]}: this model was not trained on this environment.")
    if context < 1 or steps < 1 or horizon < 1:
        raise DataError(f"`steps`, `horizon` and `context` must be at least 1, got {steps}, {horizon}, {context}.")
    previous: dict = {}

    def policy(states, actions):
        row = history_row(states, actions, state_stream, action_stream, context, env.prompt)
        warm = shift_plan(previous["plan"]) if warm_start and "plan" in previous else None
        result = model.plan(row, horizon=horizon, cost=env.cost, low=env.low.tolist(), high=env.high.tolist(),
                            action_stream=action_stream, pattern=[action_stream, state_stream],
                            from_last_vector=True, warm_start=warm, seed=seed + len(actions), **plan_options)
        previous["plan"] = result.actions
        return result.actions[0]

    return run_policy(env, policy, steps, seed)
