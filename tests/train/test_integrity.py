"""A diverged loss stops the run before anything from it is saved; one training run per output_dir."""

import os
import socket

import pytest
import torch
from conftest import hold_lock, train_args, write_dynamics_dataset
from transformers import TrainerCallback

from wmfactory.extras.errors import ConfigError, DataError
from wmfactory.train.lock import LOCK_FILE
from wmfactory.train.tuner import run_exp


class Diverge(TrainerCallback):
    """Poisons the projector before step 3, as a learning rate far too high would."""

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 2:
            with torch.no_grad():
                model.projector.m[0].weight.fill_(float("nan"))


def test_a_nan_loss_stops_the_run_and_nothing_from_it_is_saved(tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    out = tmp_path / "out"
    args = train_args(out, data_dir, finetuning_type="full", max_steps=6, save_strategy="steps", save_steps=2)
    with pytest.raises(DataError, match=r"NaN or Inf between step 3 and step 3; .* checkpoint is .*checkpoint-2"):
        run_exp(args, callbacks=[Diverge()])
    names = set(os.listdir(out))
    assert "checkpoint-2" in names and "checkpoint-4" not in names and "model.safetensors" not in names
    assert LOCK_FILE not in names  # released on the error too


def test_one_command_per_output_dir_and_a_killed_holder_frees_it(tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    out = tmp_path / "out"
    holder = hold_lock(out, "predict run")
    with pytest.raises(ConfigError, match=rf"is in use by another predict run \(process {holder.pid}@"
                                          rf"{socket.gethostname()}, see .*{LOCK_FILE}\)"):
        run_exp(train_args(out, data_dir, max_steps=1))
    holder.kill()  # SIGKILL: the operating system releases its lock
    holder.wait()
    assert (out / LOCK_FILE).exists()  # the file a killed holder leaves is no lock
    trainer = run_exp(train_args(out, data_dir, max_steps=1))
    assert trainer.state.global_step == 1 and not (out / LOCK_FILE).exists()


def test_a_world_model_run_without_targets_is_refused_and_partial_loss_is_counted(tmp_path, capsys):
    from conftest import write_dataset, write_embedding

    data_dir = tmp_path / "data"
    one_group = [{"messages": [{"role": "user", "content": f"<m1>row {i}"}, {"role": "assistant", "content": "ok"}],
                  "embeddings": {"m1": [write_embedding(data_dir / f"{i}.json", [[i, 1.0, 2.0, 3.0]])]}} for i in range(3)]
    write_dataset(data_dir, "single", one_group)  # `next` targets every group but the first: none here
    with pytest.raises(DataError, match=r"no training row holds a target vector \(`embedding_targets: next`"):
        run_exp(train_args(tmp_path / "out", data_dir, dataset="single"))
    write_dynamics_dataset(data_dir, rows=4)
    run_exp(train_args(tmp_path / "out2", data_dir, dataset="dynamics,single", max_steps=1))
    assert "3 of 7 training rows hold no target vector" in capsys.readouterr().err


def test_a_full_disk_is_one_line_and_the_earlier_checkpoints_stay(tmp_path, monkeypatch):
    import errno

    from wmfactory.train.checkpoints import newest_complete_checkpoint

    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    out = tmp_path / "out"
    original = torch.save

    def save(obj, f, *args, **kwargs):  # the disk fills up while checkpoint-4 is written
        if "checkpoint-4" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    args = train_args(out, data_dir, max_steps=6, save_strategy="steps", save_steps=2)
    with pytest.raises(DataError, match=r"checkpoint-4/.*': No space left on device\. .*newest complete: .*checkpoint-2"):
        run_exp(args)
    assert newest_complete_checkpoint(str(out)) == str(out / "checkpoint-2")

