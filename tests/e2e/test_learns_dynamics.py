"""End to end: the tiny model, trained a few hundred steps on trajectories of a linear dynamical system, learns to
predict the next state (embedding_loss falls at least tenfold) through the public entry point."""

import json

from conftest import train_args, write_dynamics_dataset

from wmfactory.train.tuner import run_exp


def test_embedding_loss_falls_tenfold(tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=64, steps=6, d=4)
    out = tmp_path / "out"
    run_exp(train_args(
        out, data_dir, finetuning_type="lora", lora_rank=8, max_steps=200, learning_rate=3e-3,
        per_device_train_batch_size=8, logging_steps=10, warmup_steps=10, lr_scheduler_type="cosine",
    ))
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [entry["current_steps"] for entry in log] == list(range(10, 201, 10))
    first, last = log[0]["embedding_loss"], log[-1]["embedding_loss"]
    print(f"embedding_loss {first:.4f} -> {last:.4f} ({first / last:.1f}x)")
    assert first / last >= 10
