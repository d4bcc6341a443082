"""Planning with a world model by model-predictive control: choose the vectors of a condition stream (actions,
treatments) over the next `horizon` predicted vectors so that a cost of the predicted states is smallest.

Each iteration draws `candidates` action sequences, rolls every one out from the row's encoded prefix as ONE batch
(the engine's forks, each fork with its own actions; with `num_samples` S, S sampled futures per candidate), scores
them, and refits the sampling distribution:

- `cem` (the cross-entropy method): the mean and standard deviation of the `elites` cheapest candidates;
- `mppi` (model-predictive path integral): the mean and deviation of all candidates weighted by
  `softmax(-(cost - min cost) / (mppi_temperature * cost spread))`, the spread being the costs' standard deviation.

The current mean is always one of the candidates, so the best cost never gets worse from one iteration to the
next. Execute the first action of the result and plan again from the new state (closed loop); `warm_start` takes the
previous plan shifted by one step (`shift_plan`)."""

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..extras.errors import DataError
from .engine import Session, emission_order
from .row_api import check_positions, check_steps, checked_conditions, rollout_features, sampling_of
from .rows import stream_sequence

Cost = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass
class PlanResult:
    actions: np.ndarray  # [n_actions, d_a]: the best action sequence found (n_actions: the action slots in the horizon)
    states: np.ndarray | dict[str, np.ndarray]  # [horizon, d_s] predicted under it (mean over sampled futures)
    cost: float  # its cost (over sampled futures: their mean, or their CVaR with risk="cvar")
    costs: np.ndarray  # [iterations]: the best cost after each iteration
    state_samples: Optional[np.ndarray | dict[str, np.ndarray]] = None  # [S, horizon, d_s] with num_samples


def plan(model, row, horizon: int, context_groups: Optional[int] = None, dataset_dir: Optional[str] = None,
         from_last_vector: bool = False, **options) -> PlanResult:
    """`plan_features` on a row as `rollout` takes it (a dict in the dataset format, or `(dataset, index)`; its
    vectors, or its first `context_groups` groups, are the history; `from_last_vector` as in `rollout`)."""
    features = rollout_features(model, row, 0, dataset_dir, context_groups, from_last_vector)
    return plan_features(model, features, horizon, **options)


def plan_features(model, features: dict[str, Any], horizon: int, cost: Optional[Cost] = None, goal=None,
                  weights=None, action_stream: Optional[str] = None, low=-1.0, high=1.0, candidates: int = 128,
                  iterations: int = 3, elites: Optional[int] = None, method: str = "cem", seed: Optional[int] = None,
                  warm_start=None, num_samples: Optional[int] = None, risk: str = "mean", alpha: float = 0.1,
                  temperature: Optional[float] = None, mppi_temperature: float = 1.0,
                  conditions: Optional[dict] = None, pattern: Optional[list[str]] = None) -> PlanResult:
    """The action sequence, among those tried, whose predicted states cost least after the end of the row whose
    features (`encode_row`'s) are `features`.

    `cost(states, actions)` receives the predicted states `[N, horizon, d_s]` (a dict `{stream: tensor}` with several
    predicted streams) and the actions `[N, n_actions, d_a]`, torch tensors in the data's own units, and returns `[N]`;
    or `goal` (a vector `[d_s]`, or `{stream: vector}`) with optional per-dimension `weights`: the weighted squared
    distance of every predicted state to the goal, summed over the horizon. `low`/`high`: bounds of the actions,
    scalars or `[d_a]`. `elites` (CEM): how many of the cheapest candidates refit the distribution (default one in
    eight, at most 16). `conditions`: the vectors of other condition streams, shared by every candidate."""
    cfg = model.config
    check_steps(horizon, "horizon")
    if elites is None:  # one candidate in eight, at most 16 (16 of 128)
        elites = min(16, max(1, candidates // 8)) if isinstance(candidates, int) else candidates
    for name, value in (("candidates", candidates), ("iterations", iterations), ("elites", elites)):
        check_steps(value, name)
    if elites > candidates:
        raise DataError(f"`elites` ({elites}) must be at most `candidates` ({candidates}).")
    if method not in ("cem", "mppi"):
        raise DataError(f"`method` must be 'cem' or 'mppi', got {method!r}.")
    if risk not in ("mean", "cvar"):
        raise DataError(f"`risk` must be 'mean' or 'cvar', got {risk!r}.")
    if not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
        raise DataError(f"`alpha` must be in (0, 1], got {alpha!r}.")
    if not (isinstance(mppi_temperature, (int, float)) and mppi_temperature > 0):
        raise DataError(f"`mppi_temperature` must be positive, got {mppi_temperature!r}.")
    if (cost is None) == (goal is None):
        raise DataError("give exactly one of `cost` (a function of states and actions) and `goal` (a state vector).")
    if cost is not None and not callable(cost):
        raise DataError(f"`cost` must be a function cost(states, actions) -> [N], got {type(cost).__name__}.")
    action_stream = _action_stream(cfg, action_stream)
    d_a = cfg.stream_dims[action_stream]
    low_t, high_t = _bound(low, "low", d_a), _bound(high, "high", d_a)
    if (low_t > high_t).any():
        raise DataError(f"`low` must not exceed `high` in any dimension (low {low_t.tolist()}, high "
                        f"{high_t.tolist()}).")
    sampling = sampling_of(num_samples, temperature, seed)
    samples = num_samples or 1
    shared = checked_conditions(model, conditions) or {}
    if action_stream in shared:
        raise DataError(f"`conditions['{action_stream}']`: the planner chooses the action stream's vectors.")

    slots = _emitted(cfg, features, horizon, pattern)
    n_actions = slots.get(action_stream, 0)
    if n_actions == 0:
        raise DataError(f"the stream pattern after this row calls for no vector of '{action_stream}' within "
                        f"{horizon} predicted vectors: there is nothing to plan.")
    check_positions(model, features, sum(slots.values()), "a plan")
    predicted = [name for name in cfg.stream_dims if not cfg.is_condition(name) and slots.get(name)]
    score = cost if cost is not None else _goal_cost(cfg, goal, weights, predicted)

    device = model.language_model.device
    session = Session(model, [features])

    def evaluate(actions: torch.Tensor):
        given = dict(shared, **{action_stream: actions.to(device)})
        continuation = session.run(horizon, forks=len(actions), conditions=given, sampling=sampling,
                                   pattern=pattern)[0]
        states, fed = continuation.tensors()
        values = _checked_costs(score(states[predicted[0]] if len(predicted) == 1 else states, fed[action_stream]),
                                len(actions) * samples)
        values = _aggregate(values.view(len(actions), samples), risk, alpha)  # [N]
        return values, lambda i: {name: s.view(len(actions), samples, *s.shape[1:])[i].cpu()
                                  for name, s in states.items()}

    search = search_actions(evaluate, n_actions, low_t, high_t, candidates, iterations, elites, method, seed,
                            warm_start, mppi_temperature)
    best_states = search.kept
    mean_states = {name: s.mean(0).numpy() for name, s in best_states.items()}
    drawn = {name: s.numpy() for name, s in best_states.items()} if sampling else None
    single = len(predicted) == 1
    return PlanResult(
        actions=search.actions.numpy(),
        states=mean_states[predicted[0]] if single else mean_states,
        cost=search.cost,
        costs=search.costs,
        state_samples=None if drawn is None else (drawn[predicted[0]] if single else drawn),
    )


@dataclass
class Search:
    actions: torch.Tensor  # [n_actions, d_a] the best sequence tried
    cost: float
    costs: np.ndarray  # [iterations] the best cost after each iteration
    kept: Any  # what `evaluate` kept for the best sequence


def search_actions(evaluate: Callable[[torch.Tensor], tuple[torch.Tensor, Callable[[int], Any]]], n_actions: int,
                   low: torch.Tensor, high: torch.Tensor, candidates: int = 128, iterations: int = 3,
                   elites: int = 16, method: str = "cem", seed: Optional[int] = None, warm_start=None,
                   mppi_temperature: float = 1.0) -> Search:
    """CEM or MPPI over action sequences `[n_actions, d_a]` within `low`/`high` `[d_a]`, whatever predicts their
    outcome: `evaluate(actions [N, n_actions, d_a])` returns their costs `[N]` and a function that gives what to keep
    of candidate i (the planner keeps its predicted states). The same search plans over a world model (`plan`) or
    over known dynamics (an upper bound for it, as in `examples/control`)."""
    d_a = low.shape[0]
    generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**31, ()).item()))
    mean = (low + high)[None].expand(n_actions, -1) / 2
    if warm_start is not None:
        mean = _warm_start(warm_start, n_actions, d_a)
    std = ((high - low) / 2)[None].expand(n_actions, -1).clone()
    best = Search(mean, math.inf, np.zeros(0), None)
    history = []
    for _ in range(iterations):
        noise = torch.randn((candidates, n_actions, d_a), generator=generator)
        actions = torch.maximum(torch.minimum(mean + std * noise, high), low)  # [N, n_actions, d_a]
        actions[0] = torch.maximum(torch.minimum(mean, high), low)  # the current mean is always tried
        values, keep = evaluate(actions)
        chosen = int(values.argmin())
        if values[chosen] < best.cost:
            best = Search(actions[chosen].clone(), float(values[chosen]), best.costs, keep(chosen))
        history.append(best.cost)
        mean, std = _refit(actions, values, method, elites, mppi_temperature)
    best.costs = np.asarray(history)
    return best


def shift_plan(actions: np.ndarray) -> np.ndarray:
    """A plan `[n, d_a]` moved one step on (for `warm_start` at the next control step): its first action dropped, its
    last repeated."""
    actions = np.asarray(actions, dtype=np.float32)
    return np.concatenate([actions[1:], actions[-1:]], axis=0)


def _action_stream(cfg, name: Optional[str]) -> str:
    conditions = cfg.given_streams
    if name is None:
        if len(conditions) != 1:
            raise DataError(f"name the `action_stream` to plan among the model's condition streams {conditions}"
                            if conditions else "the model has no condition stream (`condition_streams`) to plan: "
                                               "train it with the actions as a condition stream.")
        return conditions[0]
    if name not in conditions:
        raise DataError(f"`action_stream` '{name}' is not a condition stream of this model (its condition streams: "
                        f"{conditions}).")
    return name


def _bound(value, name: str, d: int) -> torch.Tensor:
    try:
        array = np.broadcast_to(np.asarray(value, dtype=np.float32), (d,))
    except (TypeError, ValueError):
        raise DataError(f"`{name}` must be a number or {d} numbers (one per action dimension), got {value!r}.") \
            from None
    if not np.isfinite(array).all():
        raise DataError(f"`{name}` must be finite, got {value!r}.")
    return torch.from_numpy(array.copy())


def _warm_start(value, n: int, d: int) -> torch.Tensor:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        array = np.zeros((0,))
    if array.shape != (n, d) or not np.isfinite(array).all():
        raise DataError(f"`warm_start` must be finite numbers of shape [{n}, {d}] (the previous plan shifted by one "
                        f"step: `shift_plan`), got shape {list(array.shape)}.")
    return torch.from_numpy(array)


def _emitted(cfg, features: dict[str, Any], horizon: int, pattern: Optional[list[str]]) -> dict[str, int]:
    """How many vectors of each stream follow the row until `horizon` predicted vectors are made."""
    streams, groups = stream_sequence(features), list(features["embedding_groups"])
    first = {}
    for name, group in zip(streams, groups):
        first.setdefault(group, name)
    order = emission_order([first[g] for g in sorted(first)], pattern)
    counts: dict[str, int] = {}
    predicted = 0
    for _ in range(horizon * (len(cfg.stream_dims) + 1) + len(cfg.stream_dims)):
        name = next(order)
        counts[name] = counts.get(name, 0) + 1
        if not cfg.is_condition(name):
            predicted += 1
            if predicted == horizon:
                return counts
    raise DataError("the rollout pattern after this row holds no predicted stream: there are no states to plan for.")


def _goal_cost(cfg, goal, weights, predicted: list[str]) -> Cost:
    """The weighted squared distance of each predicted state to the goal, summed over the horizon and the streams."""
    goals = goal if isinstance(goal, dict) else {predicted[0]: goal} if len(predicted) == 1 else None
    if goals is None:
        raise DataError(f"the model predicts several streams {predicted}: give `goal` as {{stream: vector}}.")
    weight_of = weights if isinstance(weights, dict) else {name: weights for name in goals}
    targets = {}
    for name, vector in goals.items():
        if name not in predicted:
            raise DataError(f"`goal['{name}']`: '{name}' is not a predicted stream of this model ({predicted}).")
        d = cfg.stream_dims[name]
        targets[name] = (_vector(vector, f"goal for stream '{name}'", d),
                         _vector(1.0 if weight_of.get(name) is None else weight_of[name], f"weights of '{name}'", d))

    def cost(states, actions: torch.Tensor) -> torch.Tensor:
        states = states if isinstance(states, dict) else {predicted[0]: states}
        total = 0.0
        for name, (target, weight) in targets.items():
            s = states[name]
            total = total + (weight.to(s.device) * (s - target.to(s.device)) ** 2).sum(dim=(1, 2))
        return total

    return cost


def _vector(value, what: str, d: int) -> torch.Tensor:
    try:
        array = np.broadcast_to(np.asarray(value, dtype=np.float32), (d,))
    except (TypeError, ValueError):
        raise DataError(f"the {what} must be {d} numbers, got shape {list(np.shape(value))}.") from None
    if not np.isfinite(array).all():
        raise DataError(f"the {what} must be finite numbers.")
    return torch.from_numpy(array.copy())


def _checked_costs(values, count: int) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(np.asarray(values, dtype=np.float32))
        except (TypeError, ValueError):
            raise DataError(f"the cost function must return a tensor [{count}], got {type(values).__name__}.") \
                from None
    if values.shape != (count,):
        raise DataError(f"the cost function must return one number per candidate future, shape [{count}]; it "
                        f"returned shape {list(values.shape)}.")
    values = values.detach().float().cpu()
    if not torch.isfinite(values).all():
        raise DataError(f"the cost function returned {int((~torch.isfinite(values)).sum())} values that are NaN or "
                        "infinite.")
    return values


def _aggregate(values: torch.Tensor, risk: str, alpha: float) -> torch.Tensor:
    """Costs `[N, S]` of S sampled futures per candidate -> `[N]`: their mean, or with `cvar` the mean of the worst
    ceil(alpha * S)."""
    if risk == "mean" or values.shape[1] == 1:
        return values.mean(1)
    worst = max(1, math.ceil(alpha * values.shape[1]))
    return values.topk(worst, dim=1).values.mean(1)


def _refit(actions: torch.Tensor, values: torch.Tensor, method: str, elites: int,
           mppi_temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The next sampling distribution's mean and standard deviation `[n_actions, d_a]`."""
    if method == "cem":
        chosen = actions[values.topk(elites, largest=False).indices]
        return chosen.mean(0), chosen.std(0, unbiased=False)
    spread = values.std().clamp(min=1e-12)
    weights = torch.softmax(-(values - values.min()) / (mppi_temperature * spread), dim=0)[:, None, None]
    mean = (weights * actions).sum(0)
    return mean, (weights * (actions - mean) ** 2).sum(0).sqrt()
