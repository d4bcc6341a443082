"""The default frame (`predict_residual: ridge`) learns: on dynamics a linear map of the last vectors cannot follow,
training with the default keys brings the held-out error well below that of the frame alone (a least-squares fit
of the next vector on the last two, computed here with numpy, the frame's forecast before any training)."""

import json

import numpy as np
import pytest
from conftest import rotation_matrix, train_args, write_dataset, write_embedding

from wmfactory.commands.predict import read_predictions, run_predict
from wmfactory.train.tuner import run_exp

D, STEPS = 2, 6


def nonlinear_trajectories(rows: int, seed: int) -> np.ndarray:
    """x[t+1] = A tanh(2 x[t]) * 1.5, A a rotation: bounded, and far from linear in x. `[rows, STEPS, D]`."""
    rng, a = np.random.default_rng(seed), rotation_matrix(D, seed=3)
    x = rng.uniform(-1.5, 1.5, size=(rows, D))
    out = [x]
    for _ in range(STEPS - 1):
        x = 1.5 * np.tanh(2 * x) @ a.T
        out.append(x)
    return np.stack(out, axis=1).astype(np.float32)


def write_rows(data_dir, name: str, trajectories: np.ndarray) -> None:
    rows = []
    for r, trajectory in enumerate(trajectories):
        files = {f"m{t + 1}": [f"{name}/r{r}_t{t}.json"] for t in range(STEPS)}
        for t, vector in enumerate(trajectory):
            write_embedding(data_dir / name / f"r{r}_t{t}.json", vector)
        rows.append({"messages": [{"role": "user", "content": "Days: <m1><m2>"},
                                  {"role": "assistant", "content": "Next: <m3><m4><m5><m6>"}],
                     "embeddings": files})
    write_dataset(data_dir, name, rows)


def least_squares_on_last_two(train: np.ndarray, heldout: np.ndarray) -> float:
    """MSE on `heldout` (targets t >= 2) of the linear map [x[t-1], x[t-2], 1] -> x[t] fitted on `train`."""
    def features(trajectories):
        return np.concatenate([trajectories[:, 1:-1], trajectories[:, :-2], np.ones_like(trajectories[:, 2:, :1])],
                              axis=2).reshape(-1, 2 * D + 1)

    weights, *_ = np.linalg.lstsq(features(train), train[:, 2:].reshape(-1, D), rcond=None)
    return float(np.mean((features(heldout) @ weights - heldout[:, 2:].reshape(-1, D)) ** 2))


def test_training_with_the_default_frame_beats_the_frame_alone(tmp_path):
    data_dir = tmp_path / "data"
    train, heldout = nonlinear_trajectories(128, seed=1), nonlinear_trajectories(32, seed=2)
    write_rows(data_dir, "train", train)
    write_rows(data_dir, "heldout", heldout)
    out = tmp_path / "out"
    run_exp(train_args(out, data_dir, dataset="train", max_steps=300, learning_rate=3e-3, logging_steps=50,
                       per_device_train_batch_size=16, lm_loss_weight=0))  # predict_residual left at its default
    assert json.loads((out / "config.json").read_text())["predict_residual"] == "ridge"
    path = run_predict({"model_name_or_path": str(out), "dataset": "heldout", "dataset_dir": str(data_dir),
                        "output_dir": str(tmp_path / "pred")})
    errors = [np.mean((r["predicted"][0] - heldout[r["row"], int(r["key"][1:]) - 1]) ** 2)
              for r in read_predictions(path) if int(r["key"][1:]) >= 3]
    assert len(errors) == 32 * 4
    model, frame = float(np.mean(errors)), least_squares_on_last_two(train, heldout)
    print(f"held-out MSE: trained {model:.4f}, the frame alone (least squares on the last two) {frame:.4f}")
    assert model < 0.5 * frame


def test_a_run_that_sets_nothing_but_its_data_trains_with_the_recipe_and_learns(tmp_path):
    """`stage: wm` with no training key at all: the recipe's values (parser.WM_DEFAULTS), 600 steps where 3 epochs
    are fewer, a tenth of the rows held out and the checkpoint with the best held-out rollouts kept."""
    from conftest import TINY_MODEL

    data_dir = tmp_path / "data"
    train, heldout = nonlinear_trajectories(128, seed=1), nonlinear_trajectories(32, seed=2)
    write_rows(data_dir, "train", train)
    write_rows(data_dir, "heldout", heldout)
    out = tmp_path / "out"
    trainer = run_exp({"stage": "wm", "model_name_or_path": TINY_MODEL, "dataset": "train",
                       "dataset_dir": str(data_dir), "output_dir": str(out), "report_to": "none",
                       "disable_tqdm": True})
    assert len(trainer.eval_dataset) == 13 and len(trainer.train_dataset) == 128 - 13  # ceil(0.1 x 128)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["max_steps"] == 600 and state["train_batch_size"] == 16  # 3 epochs of 115 rows: 24 steps
    evaluations = [entry for entry in state["log_history"] if "eval_rollout_mse" in entry]
    assert [entry["step"] for entry in evaluations] == list(range(60, 601, 60))  # every tenth of the run
    best = min(entry["eval_rollout_mse"] for entry in evaluations)
    results = json.loads((out / "train_results.json").read_text())
    assert results["kept_start"] == 0.0 and results["start_eval_rollout_mse"] > best
    final = json.loads((out / "eval_results.json").read_text())["eval_rollout_mse"]  # of the model kept
    assert state["best_metric"] == pytest.approx(best) and final == pytest.approx(best, rel=1e-5)
    path = run_predict({"model_name_or_path": str(out), "dataset": "heldout", "dataset_dir": str(data_dir),
                        "output_dir": str(tmp_path / "pred")})
    errors = [np.mean((r["predicted"][0] - heldout[r["row"], int(r["key"][1:]) - 1]) ** 2)
              for r in read_predictions(path) if int(r["key"][1:]) >= 3]
    model, frame = float(np.mean(errors)), least_squares_on_last_two(train, heldout)
    print(f"held-out MSE with the defaults: trained {model:.4f}, the frame alone {frame:.4f}")
    assert model < 0.5 * frame
