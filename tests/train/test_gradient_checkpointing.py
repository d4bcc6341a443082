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
        lm = trainer.model.language_model
        name = "is_activation_checkpointing" if hasattr(type(lm), "is_activation_checkpointing") else (
            "is_gradient_checkpointing")  # the name before transformers 5.2x
        assert getattr(lm, name) == checkpointing
    assert len(logs[True]) == 3
    for plain, checkpointed in zip(logs[False], logs[True]):
        for key in ("loss", "embedding_loss", "lm_loss", "grad_norm"):
            assert abs(plain[key] - checkpointed[key]) <= 1e-5 * abs(plain[key]), (key, plain, checkpointed)


def test_bf16_autocast_trains_close_to_float32(tmp_path):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=16)
    logs = {}
    for bf16 in (False, True):
        trainer = run_exp(train_args(tmp_path / f"bf16-{bf16}", data_dir, finetuning_type="lora", max_steps=30,
                                     learning_rate=5e-3, bf16=bf16, disable_shuffling=True,
                                     predict_residual=True))  # linear dynamics: a ridge frame leaves nothing to learn
        logs[bf16] = [h for h in trainer.state.log_history if "loss" in h]
    first32, first16 = logs[False][0]["embedding_loss"], logs[True][0]["embedding_loss"]
    assert abs(first16 - first32) <= 0.02 * first32  # bf16 rounding, same computation
    last32, last16 = logs[False][-1]["embedding_loss"], logs[True][-1]["embedding_loss"]
    assert last16 < 0.7 * first16 and abs(last16 - last32) <= 0.15 * last32  # it learns as float32 does
