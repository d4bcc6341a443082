"""The `quantile` head: the pinball loss by hand, quantiles that never cross, draws from the piecewise-linear
quantile function, and a training run that reloads and samples."""

import numpy as np
import pytest
import torch
from conftest import train_args, write_dynamics_dataset

from wmfactory.model import WorldModel
from wmfactory.model.heads import PREDICTION_HEADS, Frame, QuantileHead
from wmfactory.train.tuner import run_exp

IDENTITY = Frame(shift=torch.zeros(()), scale=torch.ones(()))


def head_with_quantiles(quantiles: torch.Tensor) -> tuple[QuantileHead, torch.Tensor]:
    """A head of d = quantiles.shape[1] and the params of one vector whose quantiles are `quantiles` `[Q, d]`."""
    head = QuantileHead(hidden_size=4, embedding_dim=quantiles.shape[1])
    return head, quantiles[None].float()


def test_registered_and_sorted():
    assert "quantile" in PREDICTION_HEADS
    head = QuantileHead(hidden_size=3, embedding_dim=2)
    with torch.no_grad():
        last = head.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.arange(18, 0, -1).float())  # every output decreasing in the level
    params = head(torch.randn(5, 3))
    assert params.shape == (5, 9, 2)
    assert (params.diff(dim=1) >= 0).all()


def test_pinball_loss_by_hand():
    quantiles = torch.tensor([[0.1 * (i + 1)] for i in range(9)])  # q_l = l, d = 1
    head, params = head_with_quantiles(quantiles)
    target = torch.tensor([[0.35]])
    expected = np.mean([level * (0.35 - level) if 0.35 >= level else (level - 1) * (0.35 - level)
                        for level in QuantileHead.LEVELS])
    assert head.loss(params, target, IDENTITY).item() == pytest.approx(expected)
    # in a frame: z = shift + scale * u, so the same head units against a target moved and scaled
    frame = Frame(shift=torch.tensor([[2.0]]), scale=torch.tensor([3.0]))
    assert head.loss(params, 2.0 + 3.0 * target, frame).item() == pytest.approx(3 * expected)


def test_draws_follow_the_quantile_function():
    levels = torch.tensor(QuantileHead.LEVELS)
    # dimension 0: q_l = l (continued to 0 and 1: a uniform distribution); dimension 1: q_l = 10 + 4 l^2
    quantiles = torch.stack([levels, 10 + 4 * levels**2], dim=1)
    head, params = head_with_quantiles(quantiles)
    generator = torch.Generator().manual_seed(0)
    draws = head.sample(params, IDENTITY, 40_000, generator=generator)[:, 0]  # [S, d]
    found = np.quantile(draws.numpy(), QuantileHead.LEVELS, axis=0)  # [Q, d]
    np.testing.assert_allclose(found, quantiles.numpy(), atol=0.02)
    assert draws[:, 0].min() >= 0 and draws[:, 0].max() <= 1
    assert head.mean(params, IDENTITY)[0].numpy() == pytest.approx(quantiles.mean(0).numpy())
    narrow = head.sample(params, IDENTITY, 40_000, temperature=0.5, generator=generator)[:, 0, 0]
    assert narrow.std().item() == pytest.approx(0.5 * draws[:, 0].std().item(), rel=0.03)
    assert narrow.median().item() == pytest.approx(0.5, abs=0.01)


def test_trains_reloads_and_samples(tmp_path):
    data = write_dynamics_dataset(tmp_path / "data", rows=16, steps=5, d=3)
    run_exp(train_args(tmp_path / "out", data, max_steps=4, prediction_head_type="quantile", learning_rate=1e-2))
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert model.config.prediction_head_type == "quantile"
    draws = model.rollout(("dynamics", 0), steps=3, dataset_dir=data, num_samples=64, seed=0)
    assert draws.shape == (64, 3, 3) and np.isfinite(draws).all()
    assert draws.std(axis=0).min() > 0  # trained by the pinball loss, its quantiles spread
