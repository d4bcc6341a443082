"""Loss normalisation: one optimizer step over 8 rows gives the same gradients however the rows are split into
micro-batches, with padding and with rows holding different numbers of target vectors and labelled tokens."""

import torch
from conftest import tiny_world_model, train_args, write_dynamics_dataset
from transformers import set_seed


from wmfactory.train.tuner import run_exp


def one_sgd_step(tmp_path, name, batch_size, accumulation):
    data_dir = tmp_path / "data"
    if not (data_dir / "dataset_info.json").exists():
        write_dynamics_dataset(data_dir, rows=8, varied=True)
    # SGD with lr 1 and no clipping: parameters after the step are init - gradient, and init is seeded
    args = train_args(
        tmp_path / name, data_dir, finetuning_type="full", max_steps=1, optim="sgd", learning_rate=1.0,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
        predict_residual=True,  # a ridge frame's zeroed last layer would leave the projector's first gradient at 0
        disable_shuffling=True, lm_loss_weight=0.5, seed=7,
    )
    trainer = run_exp(args)
    return {n: p.detach().cpu() for n, p in trainer.model.named_parameters()}, trainer.state.log_history[0]


def test_8x1_and_2x4_give_the_same_first_step(tmp_path):
    whole, log_whole = one_sgd_step(tmp_path, "b8", 8, 1)
    split, log_split = one_sgd_step(tmp_path, "b2", 2, 4)
    assert whole.keys() == split.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)
    for key in ("loss", "embedding_loss", "lm_loss"):
        assert abs(log_split[key] - log_whole[key]) <= 1e-4 * abs(log_whole[key]), key
    assert log_whole["embedding_loss"] > 0 and log_whole["lm_loss"] > 0
    # the step did move the weights, so the comparison above is between two real updates
    set_seed(7)
    init = tiny_world_model(predict_residual=True)
    moved = {n: (whole[n] - p.detach()).abs().max().item() for n, p in init.named_parameters()}
    assert moved["prediction_head.m.net.2.weight"] > 1e-3 and moved["projector.m.0.weight"] > 1e-3
    assert moved["language_model.model.layers.0.self_attn.q_proj.weight"] > 1e-6

