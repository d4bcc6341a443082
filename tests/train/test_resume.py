"""LLaMA-Factory's resume rule: a second run into an output_dir with checkpoints continues from the newest one."""

import json

import pytest
import torch

from conftest import train_args, write_dynamics_dataset

from wmfactory.train.tuner import run_exp


def test_second_run_resumes_and_logs_consistent_losses(tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8, varied=True)
    out = tmp_path / "out"
    args = train_args(out, data_dir, max_steps=4, save_strategy="steps", save_steps=2, lm_loss_weight=0.25)
    run_exp(args)
    args.update(max_steps=6, overwrite_output_dir=False)
    trainer = run_exp(args)
    assert trainer.state.global_step == 6
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["current_steps"] for entry in log] == [1, 2, 3, 4, 5, 6]
    for entry in log:
        expected = entry["embedding_loss"] + 0.25 * entry["lm_loss"]
        assert abs(entry["loss"] - expected) <= 1e-4 * expected, entry


def test_evaluation_during_training_logs_world_model_metrics(tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=12, varied=True)
    trainer = run_exp(train_args(tmp_path / "out", data_dir, max_steps=4, val_size=4, eval_strategy="steps",
                                 eval_steps=2, plot_loss=True, per_device_eval_batch_size=3,
                                 embedding_norm="none"))  # the loss in data units, as eval_mse
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert [h["step"] for h in evals][:2] == [2, 4]
    log = [json.loads(line) for line in (tmp_path / "out" / "trainer_log.jsonl").read_text().splitlines()]
    logged = [entry for entry in log if "eval_loss" in entry]
    for entry in logged:
        # the loss is l2 (per-vector MSE), so the two must agree; skill is finite
        assert abs(entry["eval_mse"] - entry["eval_embedding_loss"]) < 1e-6
        assert abs(entry["eval_loss"] - (entry["eval_embedding_loss"] + 0.1 * entry["eval_lm_loss"])) < 1e-4
        assert entry["eval_skill"] < 1.0
    for name in ("training_eval_loss.png", "training_eval_mse.png", "training_eval_skill.png"):
        assert (tmp_path / "out" / name).is_file()


def test_load_best_model_at_end_restores_the_best_checkpoint(tmp_path):
    """The Trainer's own path (PEFT's `load_adapter` for LoRA): the model at the end is the best checkpoint's."""
    import torch

    from wmfactory import WorldModel

    data_dir = write_dynamics_dataset(tmp_path / "data", rows=12, varied=True)
    trainer = run_exp(train_args(tmp_path / "out", data_dir, max_steps=6, val_size=4, eval_strategy="steps",
                                 eval_steps=2, save_strategy="steps", save_steps=2, load_best_model_at_end=True,
                                 metric_for_best_model="eval_mse", greater_is_better=False, learning_rate=1e-1,
                                 predict_residual=True, embedding_norm="none"))  # a ridge frame's start: below
    evals = {h["step"]: h["eval_mse"] for h in trainer.state.log_history if "eval_mse" in h}
    best_step = min(evals, key=evals.get)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    best = WorldModel.from_pretrained(trainer.state.best_model_checkpoint)
    final = WorldModel.from_pretrained(str(tmp_path / "out"))  # what save_model wrote after training
    batch = next(iter(trainer.get_eval_dataloader()))
    with torch.no_grad():
        expected, got = best(**batch).predicted_embeddings, final(**batch).predicted_embeddings
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # the last checkpoint is another model, so the comparison above tells the best from the last
    assert best_step != 6
    last = WorldModel.from_pretrained(str(tmp_path / "out" / "checkpoint-6"))
    with torch.no_grad():
        assert not torch.allclose(last(**batch).predicted_embeddings, expected, atol=1e-4)


def test_with_a_ridge_frame_the_start_is_kept_when_no_checkpoint_beats_it(tmp_path):
    """Linear dynamics, which the ridge frame already forecasts, and a learning rate that wrecks the head: the model
    before training scores best on the evaluation split, and is what the run keeps."""
    import json

    import numpy as np

    from wmfactory import WorldModel
    from wmfactory.eval.metrics import ridge_path

    data_dir = write_dynamics_dataset(tmp_path / "data", rows=12, steps=6)
    trainer = run_exp(train_args(tmp_path / "out", data_dir, max_steps=4, val_size=4, eval_strategy="steps",
                                 eval_steps=2, save_strategy="steps", save_steps=2, load_best_model_at_end=True,
                                 learning_rate=1.0))
    evals = {}  # the evaluations during training (the first at each step: the run's final `do_eval` comes later)
    for h in trainer.state.log_history:
        if "eval_loss" in h:
            evals.setdefault(h["step"], h["eval_loss"])
    metrics = json.loads((tmp_path / "out" / "train_results.json").read_text())
    assert set(evals) == {2, 4} and metrics["start_eval_loss"] < min(evals.values())  # the model before training
    assert metrics["kept_start"] == 1.0
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())  # agrees: the start is the best
    assert state["best_global_step"] == 0 and state["best_metric"] == metrics["start_eval_loss"]
    assert state["best_model_checkpoint"] == str(tmp_path / "out")
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    row = json.loads((tmp_path / "data" / "dynamics.json").read_text())[0]
    truth = np.concatenate([json.loads((tmp_path / "data" / row["embeddings"][f"m{t}"][0]).read_text())["embedding"]
                            for t in range(1, 7)])
    groups = model.predict_next(row, str(tmp_path / "data"))
    weights, k = model.statistics.m.ridge.double().numpy(), model.config.ridge_history
    for group, t in zip(groups[k - 1:], range(k, 6)):  # the ridge's forecasts, as before training
        np.testing.assert_allclose(group.predicted[0], ridge_path(weights, truth[t - k: t], 1)[-1], rtol=1e-4,
                                   atol=1e-5)


def test_running_a_finished_run_again_is_refused_and_changes_nothing(tmp_path):
    from wmfactory.extras.errors import ConfigError

    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    out = tmp_path / "out"
    args = train_args(out, data_dir, max_steps=2, save_strategy="steps", save_steps=2)
    run_exp(args)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ConfigError, match=r"already holds a finished run: .*checkpoint-2' is at step 2 of 2"):
        run_exp({**args, "overwrite_output_dir": False})
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize("finetuning_type", ["full", "lora"])
def test_a_checkpoint_of_the_one_stream_layout_before_streams_resumes_as_it_was_saved(tmp_path, finetuning_type):
    """A `checkpoint-N` written before every model held its parts per stream (keys `projector.0.weight`, ...; a
    LoRA adapter with `modules_to_save: [projector, prediction_head, statistics]`) resumes with its own weights:
    the run ends with the same weights as the same resume from the checkpoint in the current layout (without the
    upgrade the Trainer leaves the projector, head and statistics at their initialisation: full fine-tuning warns
    of missing keys and goes on, LoRA fails)."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8, steps=4)
    args = train_args(tmp_path / "new", data_dir, finetuning_type=finetuning_type, max_steps=2,
                      save_strategy="steps", save_steps=2)
    run_exp(args)
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    checkpoint = tmp_path / "old" / "checkpoint-2"
    name = "model.safetensors" if finetuning_type == "full" else "adapter_model.safetensors"
    with safe_open(str(checkpoint / name), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(str(checkpoint / name))
    old = {}
    for key, value in state.items():  # the layout before streams: the one stream's name left out
        for part in ("projector", "prediction_head", "statistics"):
            key = key.replace(f"{part}.m.", f"{part}.")
        old[key] = value
    assert any(key.endswith("projector.0.weight") for key in old) and old.keys() != state.keys()
    save_file(old, str(checkpoint / name), metadata)
    if finetuning_type == "lora":
        config = json.loads((checkpoint / "adapter_config.json").read_text())
        config["modules_to_save"] = ["projector", "prediction_head", "statistics"]
        (checkpoint / "adapter_config.json").write_text(json.dumps(config))
    finals = {}
    for run in ("new", "old"):
        (tmp_path / run / name).unlink()  # the run folder's final weights: only the checkpoint is resumed
        run_exp({**args, "output_dir": str(tmp_path / run), "max_steps": 3, "overwrite_output_dir": False})
        finals[run] = load_file(str(tmp_path / run / name))
    assert set(load_file(str(checkpoint / name))) == set(state)  # rewritten in the current layout
    assert finals["new"].keys() == finals["old"].keys()
    for key, value in finals["new"].items():
        assert torch.equal(value, finals["old"][key]), key
