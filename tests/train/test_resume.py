"""LLaMA-Factory's resume rule: a second run into an output_dir with checkpoints continues from the newest one."""

import json

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
