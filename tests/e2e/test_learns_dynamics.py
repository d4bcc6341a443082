"""End to end on a dynamical system the project does not ship: trajectories x[t+1] = A x[t] of a fixed orthogonal
map A. The tiny model trains a few hundred steps, then predicts, is evaluated and exported as a user would."""

import json

import numpy as np
import pytest
from conftest import train_args, write_dynamics_dataset

from wmfactory import WorldModel
from wmfactory.eval.report import format_report
from wmfactory.commands.evaluate import run_eval
from wmfactory.commands.export import run_export
from wmfactory.commands.predict import read_predictions, run_predict
from wmfactory.data.embeddings import load_embedding
from wmfactory.train.tuner import run_exp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dynamics")
    data_dir = write_dynamics_dataset(tmp / "data", rows=64, steps=6, d=4, seed=1)
    write_dynamics_dataset(tmp / "data", name="heldout", rows=16, steps=6, d=4, seed=2)
    out = tmp / "out"
    run_exp(train_args(
        out, data_dir, finetuning_type="lora", lora_rank=8, max_steps=200, learning_rate=3e-3,
        per_device_train_batch_size=8, logging_steps=10, warmup_steps=10, lr_scheduler_type="cosine",
        predict_residual=True,  # the dynamics are linear: a ridge frame would forecast them before any training
        ridge_history=2,  # eval's baselines from 2 known vectors on, as the counts below assume
    ))
    return tmp, out


def test_embedding_loss_falls_tenfold(trained):
    _, out = trained
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["current_steps"] for entry in log] == [1] + list(range(10, 201, 10))  # the first step too
    first, last = log[0]["embedding_loss"], log[-1]["embedding_loss"]
    print(f"embedding_loss {first:.4f} -> {last:.4f} ({first / last:.1f}x)")
    assert first / last >= 10


def heldout_stream(tmp, row):
    """The true vectors of a held-out row, read straight from its files: `[steps, d]`."""
    rows = json.loads((tmp / "data" / "heldout.json").read_text())
    files = rows[row]["embeddings"]
    return np.stack([np.asarray(json.loads((tmp / "data" / files[f"m{t + 1}"][0]).read_text())["embedding"])[0]
                     for t in range(len(files))])


def test_teacher_forced_predictions_beat_persistence_twice_and_linear_extrapolation(trained):
    tmp, out = trained
    path = run_predict({"model_name_or_path": str(out), "dataset": "heldout", "dataset_dir": str(tmp / "data"),
                        "output_dir": str(tmp / "pred")})
    records = list(read_predictions(path))
    assert len(records) == 16 * 5 and {r["mode"] for r in records} == {"teacher_forced"}
    model, persistence, linear = [], [], []
    for r in records:
        stream = heldout_stream(tmp, r["row"])
        t = int(r["key"][1:]) - 1
        target, predicted = r["target"][0], r["predicted"][0]
        np.testing.assert_allclose(target, stream[t], atol=1e-6)
        if t >= 2:  # where every baseline is defined
            model.append(np.mean((predicted - target) ** 2))
            persistence.append(np.mean((stream[t - 1] - target) ** 2))
            linear.append(np.mean((2 * stream[t - 1] - stream[t - 2] - target) ** 2))
    mse, mse_persistence, mse_linear = np.mean(model), np.mean(persistence), np.mean(linear)
    print(f"held-out MSE: model {mse:.5f}, persistence {mse_persistence:.5f}, linear {mse_linear:.5f}")
    assert mse * 2 <= mse_persistence and mse < mse_linear
    files = sorted(p.name for p in (tmp / "pred" / "predicted_embeddings").iterdir())
    assert len(files) == 80 and "heldout_row0_m2_0.safetensors" in files
    assert records[0]["file"] == "predicted_embeddings/heldout_row0_m2_0.safetensors" and records[0]["shape"] == [1, 4]
    # each file is an embedding file: the data reader gives the prediction
    saved = load_embedding("predicted_embeddings/heldout_row0_m2_0.safetensors", str(tmp / "pred"))
    np.testing.assert_array_equal(saved, records[0]["predicted"])


def test_rollout_predictions_and_evaluation_report(trained):
    tmp, out = trained
    args = {"model_name_or_path": str(out), "dataset": "heldout", "dataset_dir": str(tmp / "data"),
            "output_dir": str(tmp / "eval"), "context_groups": 2}
    path = run_predict({**args, "predict_mode": "rollout"})
    records = list(read_predictions(path))
    assert sorted({r["horizon"] for r in records}) == [1, 2, 3, 4]
    assert {r["key"] for r in records if r["horizon"] == 1} == {"m3"}

    report = run_eval(args)
    assert json.loads((tmp / "eval" / "eval_results.json").read_text()) == report
    forced = report["teacher_forced"]
    assert forced["vectors"] == 16 * 4 and forced["excluded_vectors"] == 16
    assert forced["skill"] > 0.5 and forced["model"]["mse"] < forced["linear_extrapolation"]["mse"]
    # the system is linear, so the ridge regression on the last vectors is nearly exact; the report says plainly
    # that the model does not beat it
    assert forced["ridge"]["mse"] < forced["model"]["mse"]
    assert "does NOT beat the ridge regression" in format_report(report)
    # the rollout at horizon 1 is a teacher-forced prediction of m3 from the two given groups
    h1 = report["rollout"]["horizons"]["1"]
    m3 = [r for r in records if r["key"] == "m3"]
    expected = np.mean([np.mean((r["predicted"] - r["target"]) ** 2) for r in m3])
    assert h1["model"]["mse"] == pytest.approx(expected, rel=1e-5)
    assert h1["persistence"]["mse"] == pytest.approx(
        np.mean([np.mean((heldout_stream(tmp, r["row"])[1] - r["target"][0]) ** 2) for r in m3]), rel=1e-5)
    assert set(report["rollout"]["horizons"]) == {"1", "2", "3", "4"}
    for name in ("eval_horizon.png", "eval_trajectories.png"):
        assert (tmp / "eval" / name).read_bytes()[:4] == b"\x89PNG"


def test_export_merges_lora_and_predicts_the_same(trained):
    tmp, out = trained
    export_dir = run_export({"model_name_or_path": str(out), "export_dir": str(tmp / "merged")})
    files = {p.name for p in (tmp / "merged").iterdir()}
    assert "adapter_config.json" not in files and "model.safetensors" in files
    original, merged = WorldModel.from_pretrained(str(out)), WorldModel.from_pretrained(export_dir)
    assert isinstance(merged, WorldModel) and not any("lora" in name for name in merged.state_dict())
    rows = json.loads((tmp / "data" / "heldout.json").read_text())
    for row in rows[:3]:
        for a, b in zip(original.predict_next(row, str(tmp / "data")), merged.predict_next(row, str(tmp / "data"))):
            np.testing.assert_allclose(b.predicted, a.predicted, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(merged.rollout(row, 8, str(tmp / "data")), original.rollout(row, 8, str(tmp / "data")),
                                   rtol=1e-4, atol=1e-5)
