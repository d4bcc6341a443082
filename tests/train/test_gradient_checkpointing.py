"""`gradient_checkpointing: true` recomputes activations but must train exactly as without it, projector included."""

from conftest import train_args, write_dynamics_dataset

from wmfactory.train.tuner import run_exp


def test_same_losses_with_and_without_checkpointing(tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    logs = {}
    for checkpointing in (False, True):
        trainer = run_exp(train_args(tmp_path / str(checkpointing), data_dir, finetuning_type="lora", max_steps=3,
                                     gradient_checkpointing=checkpointing, disable_shuffling=True))
        logs[checkpointing] = [h for h in trainer.state.log_history if "loss" in h]
        assert trainer.model.causal_lm.is_gradient_checkpointing == checkpointing
    assert len(logs[True]) == 3
    for plain, checkpointed in zip(logs[False], logs[True]):
        for key in ("loss", "embedding_loss", "lm_loss", "grad_norm"):
            assert abs(plain[key] - checkpointed[key]) <= 1e-5 * abs(plain[key]), (key, plain, checkpointed)
