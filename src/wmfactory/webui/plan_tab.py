"""The Plan tab (when `WorldModel.plan` exists): a goal or cost weights, bounds, horizon and candidates; the
planned actions and the states the model predicts under them; and a closed-loop run in a registered environment
(`wmfactory.inference.environments`), against the policy that always takes the bounds' midpoint."""

import json
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from ..extras.errors import DataError
from .board import Board, shown_errors
from .figures import save_png, series_figure
from .forms import registered_datasets
from .rollouts import parse_row
from .runs import model_runs


def available() -> bool:
    from ..model import WorldModel

    return callable(getattr(WorldModel, "plan", None))


def _json_value(text: str, name: str) -> Any:
    """A JSON number, list or object typed in a box; None when empty."""
    if text is None or not str(text).strip():
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise DataError(f"`{name}` must be JSON (a number, a list like [0.5, -1] or an object like "
                        f"{{\"s\": [0, 1]}}): {err}") from None


def _table(values: np.ndarray, prefix: str) -> pd.DataFrame:
    values = np.asarray(values)
    values = values[:, None] if values.ndim == 1 else values
    frame = pd.DataFrame(values, columns=[f"{prefix}[{j}]" for j in range(values.shape[1])])
    frame.insert(0, "step", np.arange(1, len(values) + 1))
    return frame


def plan(board: Board, run_dir, dataset_dir, dataset, index, pasted, context_groups, horizon, goal, weights, action_stream, low,
         high, method, candidates, iterations, elites, num_samples, risk, alpha, seed):
    model = board.model(run_dir)
    row = parse_row(pasted, dataset, index)
    goal_value = _json_value(goal, "goal")
    if goal_value is None:
        raise DataError("set a `goal`: the state to reach, a list [d_s] or an object {stream: [d]}.")
    result = model.plan(
        row, horizon=int(horizon), context_groups=int(context_groups) or None, goal=goal_value, weights=_json_value(weights, "weights"),
        action_stream=(action_stream or "").strip() or None, low=_json_value(low, "low"),
        high=_json_value(high, "high"), candidates=int(candidates), iterations=int(iterations), elites=int(elites),
        method=method, seed=int(seed), num_samples=int(num_samples) or None, risk=risk, alpha=float(alpha),
        dataset_dir=dataset_dir)
    states = result.states if isinstance(result.states, dict) else {model.config.predicted_streams[0]: result.states}
    goals = goal_value if isinstance(goal_value, dict) else {next(iter(states)): goal_value}
    actions = _table(result.actions, "action")
    state_tables = [_table(values, name).assign(stream=name) for name, values in states.items()]
    state_table = pd.concat(state_tables, ignore_index=True)
    figure = series_figure({"actions": result.actions, **states}, "", "step", goal=goals)
    costs = series_figure({"best cost": np.asarray(result.costs)}, "", "iteration")
    actions_path, states_path = board.file("plan_actions.csv"), board.file("plan_states.csv")
    actions.to_csv(actions_path, index=False)
    state_table.to_csv(states_path, index=False)
    message = f"Best cost {float(result.cost):.6g} after {len(result.costs)} iteration(s) of {method}."
    return (message, actions, actions_path, state_table, states_path, save_png(figure, board.file("plan.png")),
            save_png(costs, board.file("plan_costs.png")))


def closed_loop(board: Board, run_dir, environment, steps, context, horizon, action_stream, method, candidates,
                iterations, elites, num_samples, risk, alpha, seed):
    from ..inference.environments import closed_loop as run_closed_loop
    from ..inference.environments import make_environment, run_policy

    model = board.model(run_dir)
    env = make_environment(environment)
    options = dict(method=method, candidates=int(candidates), iterations=int(iterations), elites=int(elites),
                   num_samples=int(num_samples) or None, risk=risk, alpha=float(alpha))
    planned = run_closed_loop(model, env, steps=int(steps), horizon=int(horizon), context=int(context),
                              seed=int(seed), action_stream=(action_stream or "").strip() or None, **options)
    midpoint = (env.low + env.high) / 2
    fixed = run_policy(env, lambda states, actions: midpoint, int(steps), int(seed))
    table = pd.concat([_table(planned.states[1:], "state"), _table(planned.actions, "action").drop(columns="step")],
                      axis=1).assign(cost=planned.costs)
    path = board.file("closed_loop.csv")
    table.to_csv(path, index=False)
    figure = series_figure({"states (planner)": planned.states, "states (midpoint action)": fixed.states,
                            "actions (planner)": planned.actions}, "", "step")
    message = (f"Closed loop in `{environment}`: total cost {planned.total:.6g} over {int(steps)} steps with the "
               f"planner, {fixed.total:.6g} taking the bounds' midpoint {midpoint.tolist()} every step.")
    return message, table, path, save_png(figure, board.file("closed_loop.png"))


def build(board: Board) -> None:
    with gr.Row():
        run = gr.Dropdown(model_runs(board.saves_dir), label="run folder (a model with a condition stream)",
                          allow_custom_value=True, scale=3)
        dataset_dir = gr.Textbox(board.dataset_dir, label="dataset_dir")
        datasets = registered_datasets(board.dataset_dir)
        dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, allow_custom_value=True,
                              label="dataset")
        index = gr.Number(0, precision=0, label="row index")
    pasted = gr.Textbox(label="or paste a row (JSON)", lines=2)
    context_groups = gr.Number(0, precision=0, label="context_groups",
                               info="the plan starts after this many groups of the row (0: after the whole row)")
    with gr.Row():
        goal = gr.Textbox(label="goal", info="the state to reach: [d_s], or {stream: [d]}")
        weights = gr.Textbox(label="weights", info="per-dimension cost weights (optional), same shape as the goal")
        action_stream = gr.Textbox(label="action_stream", info="a condition stream (default: the only one)")
    with gr.Row():
        low = gr.Textbox("-1.0", label="low", info="lower action bound: a number or [d_a]")
        high = gr.Textbox("1.0", label="high", info="upper action bound: a number or [d_a]")
        horizon = gr.Number(5, precision=0, label="horizon")
        method = gr.Dropdown(["cem", "mppi"], value="cem", label="method")
    with gr.Row():
        candidates = gr.Number(128, precision=0, label="candidates")
        iterations = gr.Number(3, precision=0, label="iterations")
        elites = gr.Number(16, precision=0, label="elites")
        num_samples = gr.Number(0, precision=0, label="num_samples", info="sampled futures per candidate (0: mean)")
        risk = gr.Dropdown(["mean", "cvar"], value="mean", label="risk")
        alpha = gr.Number(0.1, label="alpha", info="cvar: the worst fraction averaged")
        seed = gr.Number(0, precision=0, label="seed")
    go = gr.Button("Plan", variant="primary")
    message = gr.Markdown()
    with gr.Row():
        picture = gr.Image(label="planned actions and predicted states", type="filepath", interactive=False,
                           buttons=["download", "fullscreen"])
        costs = gr.Image(label="best cost per iteration", type="filepath", interactive=False,
                         buttons=["download", "fullscreen"])
    actions = gr.Dataframe(label="planned actions", interactive=False)
    actions_csv = gr.File(label="actions (CSV)")
    states = gr.Dataframe(label="predicted states", interactive=False)
    states_csv = gr.File(label="states (CSV)")
    go.click(shown_errors(lambda *a: plan(board, *a)),
             inputs=[run, dataset_dir, dataset, index, pasted, context_groups, horizon, goal, weights, action_stream, low, high,
                     method, candidates, iterations, elites, num_samples, risk, alpha, seed],
             outputs=[message, actions, actions_csv, states, states_csv, picture, costs], api_name="plan")
    from ..inference.environments import ENVIRONMENTS

    with gr.Accordion("Closed loop in an environment", open=False):
        gr.Markdown("Plan, take the first action in the environment, plan again from the history lived through "
                    "(the horizon, method, candidates, ... above; the environment's own cost and action bounds). "
                    "`pendulum` is gymnasium's Pendulum-v1, for a model trained as `examples/control` trains it; "
                    "`register_environment` adds others.")
        with gr.Row():
            environment = gr.Dropdown(sorted(ENVIRONMENTS), value="pendulum", label="environment")
            steps = gr.Number(20, precision=0, label="steps")
            context = gr.Number(4, precision=0, label="context", info="states of history given to the planner")
        go_loop = gr.Button("Run closed loop")
        loop_message = gr.Markdown()
        loop_picture = gr.Image(label="states and actions over time", type="filepath", interactive=False,
                                buttons=["download", "fullscreen"])
        loop_table = gr.Dataframe(label="the run, step by step", interactive=False)
        loop_csv = gr.File(label="the run (CSV)")
    go_loop.click(shown_errors(lambda *a: closed_loop(board, *a)),
                  inputs=[run, environment, steps, context, horizon, action_stream, method, candidates, iterations,
                          elites, num_samples, risk, alpha, seed],
                  outputs=[loop_message, loop_table, loop_csv, loop_picture], api_name="closed_loop")
