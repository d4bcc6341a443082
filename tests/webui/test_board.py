"""The board driven through gradio_client on a loopback port, as a browser would drive it: a training started
from the form (its curve grows), stopped (a checkpoint) and resumed from it; an evaluation; a rollout under
edited conditions; bad form values answered by their one-line message."""

import dataclasses
import json
import os
import socket
import time

import numpy as np
import pytest

from conftest import TINY_MODEL, rotation_matrix, write_controlled_dataset

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

from wmfactory import WorldModel  # noqa: E402
from wmfactory.webui import create_app, launch_app  # noqa: E402
from wmfactory.webui.forms import TRAIN_DATACLASSES, config_path  # noqa: E402
from wmfactory.inference.environments import Environment, register_environment  # noqa: E402

# the controlled linear system of `write_controlled_dataset(seed=2)`: s' = A s + B a
A_MATRIX = 0.9 * rotation_matrix(2)
B_MATRIX = np.random.default_rng(2).normal(size=(2, 3)) * 0.5


class LinearSystem(Environment):
    state_dim, action_dim = 2, 3
    low, high = np.full(3, -1.0), np.full(3, 1.0)

    def reset(self, seed):
        self.state = np.random.default_rng(seed).normal(size=2)
        return self.state.astype(np.float32)

    def step(self, action):
        cost = float(self.state @ self.state)
        self.state = A_MATRIX @ self.state + B_MATRIX @ np.asarray(action, np.float64)
        return self.state.astype(np.float32), cost

    def cost(self, states, actions):
        return (states ** 2).sum((1, 2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("board")
    data_dir = write_controlled_dataset(tmp / "data")
    saves = str(tmp / "saves")
    register_environment("linear", LinearSystem)
    app = create_app(saves_dir=saves, dataset_dir=data_dir)
    launch_app(app, port=free_port(), saves_dir=saves, block=False)
    client = gradio_client.Client(app.local_url, verbose=False)
    yield {"app": app, "client": client, "data": data_dir, "saves": saves, "tmp": tmp}
    if app.board.job.running:
        app.board.job.process.kill()
    app.close()


def form(board, **values) -> list:
    """The Train form's values in the order of its inputs: the board's initial ones, with `values` typed in."""
    from wmfactory.webui.forms import form_fields, initial_values

    fields = form_fields()
    start = dict(zip([f.name for f in fields], initial_values(fields, board["saves"], board["data"])))
    unknown = set(values) - set(start)
    assert not unknown, unknown
    start.update(values)
    return list(start.values())


def run_form(board, output_dir, **values):
    typed = dict(model_name_or_path=TINY_MODEL, dataset=["control"], output_dir=output_dir, condition_streams="a",
                 lm_loss_weight="0", learning_rate="5e-3", per_device_train_batch_size="4", logging_steps="5",
                 disable_tqdm="true", seed="0")
    return form(board, **{**typed, **values})


def wait_for(client, condition, timeout=120.0):
    """Polls the Train tab's status (what its timer calls) until `condition(status)`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(api_name="/train_status")
        if condition(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"timed out; last status: {status}")


def log_steps(run_dir):
    path = os.path.join(run_dir, "trainer_log.jsonl")
    if not os.path.isfile(path):
        return []
    return [json.loads(line)["current_steps"] for line in open(path) if line.strip()]


def test_every_key_of_the_train_command_is_in_the_form(board):
    from wmfactory.webui.forms import form_fields

    keys = [f.name for cls in TRAIN_DATACLASSES for f in dataclasses.fields(cls) if f.init]
    labels = {getattr(block, "label", None) for block in board["app"].blocks.values()}
    assert len(keys) > 150
    assert [key for key in keys if key not in labels] == []
    from wmfactory.webui.forms import COMMON_TRAINING_KEYS, OTHER_TRAINING_SECTION
    from wmfactory.hparams import TrainingArguments

    assert set(COMMON_TRAINING_KEYS) <= {f.name for f in dataclasses.fields(TrainingArguments)}
    sections = {f.name: f.section for f in form_fields()}
    assert sections["learning_rate"] == "Output and training loop" and sections["adam_beta1"] == OTHER_TRAINING_SECTION
    assert sections["condition_streams"] == "World model" and sections["lora_rank"] == "Model and method"
    helps = {f.name: f.help for f in form_fields()}
    assert helps["embedding_loss_weight"] == "Weight of the embedding loss."  # the dataclass's own help text
    # the board trains world models: it shows the values a stage wm run fills in, and leaves them unwritten
    shown = {f.name: f.default for f in form_fields()}
    assert shown["learning_rate"] == "0.001" and shown["unroll_steps"] == "2" and shown["lora_rank"] == "16"
    assert helps["learning_rate"].endswith("Stage wm default: 0.001 (stage sft: 5e-05).")


@pytest.fixture(scope="module")
def trained(board):
    """Start from the form, watch the log grow, Stop (SIGTERM: a checkpoint), resume from it with
    `resume_from_checkpoint: true`, to the end."""
    client, run_dir = board["client"], os.path.join(board["saves"], "ctl")
    seen = {}
    values = run_form(board, run_dir, max_steps="3000")
    seen["preview"], seen["command"] = client.predict(*values, api_name="/preview")
    seen["started"], seen["started_yaml"] = client.predict(*values, api_name="/start")
    seen["process_args"] = list(board["app"].board.job.process.args)
    seen["ran_yaml"] = open(seen["process_args"][-1]).read()
    first = wait_for(client, lambda s: len(log_steps(run_dir)) >= 2 and s[2])
    seen["first"], seen["first_steps"] = first, log_steps(run_dir)
    later = wait_for(client, lambda s: len(log_steps(run_dir)) > len(seen["first_steps"]) + 1 and s[2])
    seen["later"], seen["later_steps"] = later, log_steps(run_dir)
    client.predict(api_name="/stop")
    seen["stopped"] = wait_for(client, lambda s: "**stopped**" in s[1] or "**failed" in s[1] or "**finished" in s[1])
    seen["stopped_steps"] = log_steps(run_dir)
    seen["checkpoints"] = sorted(n for n in os.listdir(run_dir) if n.startswith("checkpoint-"))
    stop_step = int(seen["checkpoints"][-1].split("-")[1]) if seen["checkpoints"] else 0
    seen["stop_step"] = stop_step
    client.predict(*run_form(board, run_dir, max_steps=str(stop_step + 10), resume_from_checkpoint="true"),
                   api_name="/start")
    seen["resumed"] = wait_for(client, lambda s: "**finished**" in s[1] or "**failed" in s[1])
    seen["resumed_steps"] = log_steps(run_dir)
    seen["state"] = json.load(open(os.path.join(run_dir, "trainer_state.json")))
    return run_dir, seen


def test_training_from_the_form_grows_its_curve_stops_and_resumes(board, trained):
    run_dir, seen = trained
    # what Start ran is the previewed YAML, by the previewed command
    path = config_path(os.path.join(board["saves"], ".webui"), run_dir)
    assert seen["command"] == f"wmfactory train {path}"
    assert seen["process_args"][-2:] == ["train", path]
    assert path.endswith("/.webui/ctl.yaml")
    # (the page's code box drops the file's final newline)
    assert seen["ran_yaml"].rstrip("\n") == seen["started_yaml"] == seen["preview"]
    from wmfactory.hparams.parser import load_yaml

    config = load_yaml(seen["preview"])
    assert config["stage"] == "wm" and config["learning_rate"] == 0.005 and config["max_steps"] == 3000
    assert config["dataset"] == "control" and config["condition_streams"] == "a"
    # the curve grows: more logged steps, drawn again
    assert seen["later_steps"][: len(seen["first_steps"])] == seen["first_steps"]
    assert len(seen["later_steps"]) > len(seen["first_steps"])
    assert os.path.isfile(seen["first"][2]) and os.path.isfile(seen["later"][2])
    assert "step " in seen["later"][1] and "/ 3000" in seen["later"][1]
    # Stop: a checkpoint at the step reached, well before max_steps
    assert "**stopped**" in seen["stopped"][1], seen["stopped"]
    assert seen["checkpoints"] and 0 < seen["stop_step"] < 3000
    assert seen["stopped_steps"][-1] <= seen["stop_step"]
    # resumed from it to the end: no step logged twice, the steps after the checkpoint appended
    assert seen["state"]["global_step"] == seen["stop_step"] + 10
    steps = seen["resumed_steps"]
    assert steps == sorted(set(steps)) and steps[-1] == seen["stop_step"] + 10
    assert steps[: len(seen["stopped_steps"])] == seen["stopped_steps"]
    # the console of each run: the first saved at the stop; the second ran only the steps after the checkpoint
    first, resumed = open(path[: -len(".yaml")] + ".log").read().split("==> wmfactory train ")[1:]
    assert f"Stopped by SIGTERM after step {seen['stop_step']}" in first
    assert resumed.count("{'loss': ") == len([step for step in steps if step > seen["stop_step"]]) > 0


def test_bad_form_values_give_their_message_and_the_board_goes_on(board, tmp_path):
    client = board["client"]
    with pytest.raises(AppError, match=r"`learning_rate` must be a positive number, got -0.001"):
        client.predict(*run_form(board, str(tmp_path / "a"), learning_rate="-1e-3"), api_name="/start")
    with pytest.raises(AppError, match=r"Dataset 'not_there' is not registered"):
        client.predict(*form(board, model_name_or_path=TINY_MODEL, dataset=["not_there"],
                             output_dir=str(tmp_path / "b")), api_name="/start")
    with pytest.raises(AppError, match=r"`max_steps` must be a number \(int\), got 'ten'"):
        client.predict(*run_form(board, str(tmp_path / "c"), max_steps="ten"), api_name="/start")
    preview, _ = client.predict(*run_form(board, str(tmp_path / "c"), max_steps="ten"), api_name="/preview")
    assert preview.startswith("# invalid configuration: `max_steps`")
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")
    assert client.predict(api_name="/train_status")[1]  # still answering


def test_evaluate_tab_shows_the_report(board, trained):
    run_dir, _ = trained
    message, forced, horizons, forced_csv, horizons_csv, horizon_png, trajectories_png, _ = board["client"].predict(
        run_dir, ["control"], board["data"], 3, 0, 0, 8, "none", api_name="/evaluate")
    report = json.load(open(os.path.join(run_dir, "eval_results.json")))
    rows = {row[forced["headers"].index("forecaster")]: dict(zip(forced["headers"], row)) for row in forced["data"]}
    from wmfactory.eval.metrics import BASELINES, OPTIONAL_BASELINES

    # every forecaster of the report, in the report's order: the baselines, then the optional ones it holds
    optional = [name for name in OPTIONAL_BASELINES if name in report["teacher_forced"]]
    assert list(rows) == ["model", *BASELINES, *optional] and {"persistence", "ridge", "training_mean"} <= set(BASELINES)
    assert ("ridge_conditions" in optional) == WorldModel.from_pretrained(run_dir).config.ridge_conditions
    if optional:
        assert rows["ridge_conditions"]["mse"] == pytest.approx(report["teacher_forced"]["ridge_conditions"]["mse"])
    assert rows["persistence"]["mse"] == pytest.approx(report["teacher_forced"]["persistence"]["mse"])
    assert rows["model"]["mse"] == pytest.approx(report["teacher_forced"]["model"]["mse"])
    assert sorted({row[horizons["headers"].index("horizon")] for row in horizons["data"]}) == [1, 2, 3]
    assert os.path.isfile(horizon_png) and os.path.isfile(trajectories_png)
    assert open(forced_csv).readline().startswith("stream,forecaster,vectors,mse")
    # baselines: statsforecast reaches eval (the rows' 3 states before the rollout are too short a history for
    # AutoETS: every rollout vector is left out, and counted)
    board["client"].predict(run_dir, ["control"], board["data"], 3, 0, 0, 8, "statsforecast", api_name="/evaluate")
    block = json.load(open(os.path.join(run_dir, "eval_results.json")))["statsforecast"]
    assert block["streams"] == ["s"] and block["excluded_vectors"]["s"] > 0


def test_explore_counterfactual_conditions_change_the_rollout(board, trained):
    run_dir, _ = trained
    client = board["client"]
    info, table = client.predict(run_dir, board["data"], "control", 1, "", 2, api_name="/explore_row")
    assert "stream `s`: 1 vector(s) in the context, 4 after it" in info
    rows = json.load(open(os.path.join(board["data"], "control.json")))
    actions = np.stack([np.load(os.path.join(board["data"], rows[1]["embeddings"][f"a{t}"][0]))[0] for t in (2, 3, 4)])
    values = np.array([[float(v) for v in row[2:]] for row in table["data"]])
    np.testing.assert_allclose(values, actions, rtol=1e-6)  # the row's own future actions, to edit
    edited = {"headers": table["headers"], "data": [row[:2] + [-float(v) for v in row[2:]] for row in table["data"]]}
    message, figure, numbers, numbers_csv, _, _ = client.predict(
        run_dir, board["data"], "control", 1, "", 2, 0, 0, 0, edited, "", 3, api_name="/explore")
    assert os.path.isfile(figure) and "Counterfactual" in message
    column = {name: i for i, name in enumerate(numbers["headers"])}
    factual = np.array([row[column["factual"]] for row in numbers["data"]]).reshape(4, 2)
    counterfactual = np.array([row[column["counterfactual"]] for row in numbers["data"]]).reshape(4, 2)
    model = WorldModel.from_pretrained(run_dir)
    expected = model.rollout(("control", 1), 4, dataset_dir=board["data"], context_groups=2, conditions={"a": actions})
    expected_cf = model.rollout(("control", 1), 4, dataset_dir=board["data"], context_groups=2,
                                conditions={"a": -actions})
    np.testing.assert_allclose(factual, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(counterfactual, expected_cf, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(counterfactual[0], factual[0], rtol=1e-5)  # s2 comes before any edited action
    assert np.abs(counterfactual[1:] - factual[1:]).max() > 1e-3
    with pytest.raises(AppError, match="there is no row 99"):
        client.predict(run_dir, board["data"], "control", 99, "", 2, api_name="/explore_row")


def test_runs_tab_lists_the_run(board, trained):
    run_dir, seen = trained
    table, csv_path, _ = board["client"].predict(api_name="/runs")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    mine = next(row for row in rows if row["run"] == "ctl")
    assert mine["dataset"] == "control" and mine["steps"] == f"{seen['stop_step'] + 10}/{seen['stop_step'] + 10}"
    assert mine["loss"] == pytest.approx(
        [json.loads(line) for line in open(os.path.join(run_dir, "trainer_log.jsonl"))][-1]["loss"])
    curves, gallery = board["client"].predict(["ctl"], ["loss"], api_name="/runs_overlay")
    assert os.path.isfile(curves) and any("eval_horizon.png" in str(item) for item in gallery)


def test_plan_tab_plans_as_the_model_does(board, trained):
    run_dir, _ = trained
    client = board["client"]
    message, actions, _, states, _, picture, costs = client.predict(
        run_dir, board["data"], "control", 2, "", 0, 4, "[0.0, 0.0]", "", "", "-1.0", "1.0", "cem", 32, 2, 4, 0,
        "mean", 0.1, 7, api_name="/plan")
    model = WorldModel.from_pretrained(run_dir)
    expected = model.plan(("control", 2), horizon=4, goal=[0.0, 0.0], low=-1.0, high=1.0, method="cem", candidates=32,
                          iterations=2, elites=4, seed=7, dataset_dir=board["data"])
    np.testing.assert_allclose([row[1:] for row in actions["data"]], expected.actions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([row[1:3] for row in states["data"]], expected.states, rtol=1e-5, atol=1e-6)
    assert f"{expected.cost:.6g}" in message and os.path.isfile(picture) and os.path.isfile(costs)
    with pytest.raises(AppError, match="goal"):
        client.predict(run_dir, board["data"], "control", 2, "", 0, 4, "[0.0, 0.0, 0.0, 0.0]", "", "", "-1.0", "1.0",
                       "cem", 32, 2, 4, 0, "mean", 0.1, 7, api_name="/plan")


def test_explore_draws_a_fan_of_sampled_futures_for_a_mixture_head(board):
    from conftest import train_args
    from wmfactory.train.tuner import run_exp

    run_dir = os.path.join(board["saves"], "mixture")
    run_exp(train_args(run_dir, board["data"], dataset="control", condition_streams="a", max_steps=4,
                       learning_rate=5e-3, lm_loss_weight=0, prediction_head_type="mixture", mixture_components=2,
                       calibrate_temperature=False))
    message, figure, numbers, _, _, _ = board["client"].predict(
        run_dir, board["data"], "control", 3, "", 2, 0, 16, 5, {"headers": ["stream", "k"], "data": []}, "", 3,
        api_name="/explore")
    assert "16 sampled futures per rollout (median, 50% and 90% bands)" in message and os.path.isfile(figure)
    column = {name: i for i, name in enumerate(numbers["headers"])}
    assert "counterfactual_q50" not in column  # no table given: the factual rollout alone
    model = WorldModel.from_pretrained(run_dir)
    rows = json.load(open(os.path.join(board["data"], "control.json")))
    actions = np.stack([np.load(os.path.join(board["data"], rows[3]["embeddings"][f"a{t}"][0]))[0] for t in (2, 3, 4)])
    draws = model.rollout(("control", 3), 4, dataset_dir=board["data"], context_groups=2, num_samples=16, seed=5,
                          conditions={"a": actions})  # [16, 4, 2]
    assert draws.std(axis=0).max() > 0
    for quantile, name in ((0.5, "factual_q50"), (0.05, "factual_q05"), (0.95, "factual_q95")):
        shown = np.array([row[column[name]] for row in numbers["data"]]).reshape(4, 2)
        np.testing.assert_allclose(shown, np.quantile(draws, quantile, axis=0), rtol=1e-4, atol=1e-6)


def test_closed_loop_acts_in_the_environment_and_plans_from_what_it_lived(board, trained):
    run_dir, _ = trained
    client = board["client"]
    message, table, csv, picture = client.predict(run_dir, "linear", 3, 2, 4, "", "cem", 16, 2, 4, 0, "mean", 0.1, 5,
                                                  api_name="/closed_loop")
    rows = np.asarray([row[1:] for row in table["data"]], dtype=np.float64)  # step | state[2] | action[3] | cost
    states, actions, costs = rows[:, :2], rows[:, 2:5], rows[:, 5]
    first = np.random.default_rng(5).normal(size=2)
    lived = [first]
    for action in actions:  # every state is the system's answer to the action taken before it
        lived.append(A_MATRIX @ lived[-1] + B_MATRIX @ action)
    np.testing.assert_allclose(states, np.stack(lived[1:]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(costs, [s @ s for s in lived[:-1]], rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(actions) <= 1.0)
    # the first action is the first of the plan made on the first state alone, with seed + 0
    model = WorldModel.from_pretrained(run_dir)
    row = {"messages": [{"role": "user", "content": "<s1>"}, {"role": "assistant", "content": ""}],
           "embeddings": {"s1": [first.astype(np.float32)[None]]}}
    plan = model.plan(row, horizon=4, cost=LinearSystem().cost, low=[-1.0] * 3, high=[1.0] * 3, pattern=["a", "s"],
                      from_last_vector=True, method="cem", candidates=16, iterations=2, elites=4, seed=5)
    np.testing.assert_allclose(actions[0], plan.actions[0], rtol=1e-4, atol=1e-5)
    # the second, on the two states and the action between them, warm-started with the first plan shifted by one
    row = {"messages": [{"role": "user", "content": "<s1><a1><s2>"}, {"role": "assistant", "content": ""}],
           "embeddings": {"s1": [first.astype(np.float32)[None]], "a1": [actions[0].astype(np.float32)[None]],
                          "s2": [states[0].astype(np.float32)[None]]}}
    warm = np.concatenate([plan.actions[1:], plan.actions[-1:]])
    second = model.plan(row, horizon=4, cost=LinearSystem().cost, low=[-1.0] * 3, high=[1.0] * 3,
                        pattern=["a", "s"], from_last_vector=True, method="cem", candidates=16, iterations=2,
                        elites=4, seed=6, warm_start=warm)
    np.testing.assert_allclose(actions[1], second.actions[0], rtol=1e-3, atol=1e-4)
    total = float(costs.sum())
    assert f"{total:.6g}" in message and os.path.isfile(csv) and os.path.isfile(picture)
    with pytest.raises(AppError, match="not trained on this environment"):
        client.predict(run_dir, "pendulum", 3, 2, 4, "", "cem", 16, 2, 4, 0, "mean", 0.1, 5, api_name="/closed_loop")
