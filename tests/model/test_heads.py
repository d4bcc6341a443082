"""The prediction-head seam: a head registered from outside (the Gaussian of docs/extending.md) trains, predicts,
saves and reloads through the world model without any other change; the deterministic heads' frame arithmetic; the
mixture and diffusion heads against values computed here."""

import math

import pytest
import torch
from conftest import TINY_MODEL
from torch import nn
from transformers import AutoTokenizer

from wmfactory.hparams import ModelArguments, WorldModelArguments
from wmfactory.model import WorldModel, build_world_model
from wmfactory.model.heads import PREDICTION_HEADS, Frame, PredictionHead, build_head, register_head


class GaussianHead(PredictionHead):
    def __init__(self, hidden_size: int, embedding_dim: int):
        super().__init__()
        self.net = nn.Linear(hidden_size, 2 * embedding_dim)

    def forward(self, hidden):
        mean, log_std = self.net(hidden).float().chunk(2, dim=-1)
        return mean, log_std.clamp(-7, 5)

    def loss(self, params, target, frame):
        mean, log_std = params
        u = frame.to_head(target)
        nll = 0.5 * ((u - mean) / log_std.exp()).pow(2) + log_std
        return (nll + torch.log(frame.scale * torch.ones_like(u))).mean(dim=-1)

    def mean(self, params, frame):
        return frame.to_normalized(params[0])

    def sample(self, params, frame, num_samples=1, temperature=1.0, generator=None):
        mean, log_std = params
        noise = torch.randn((num_samples, *mean.shape), generator=generator, device=mean.device)
        return frame.to_normalized(mean + temperature * log_std.exp() * noise)


BATCH = {
    "input_ids": torch.tensor([[5, 6, 2, 2, 2, 8]]),
    "embedding_vectors": torch.tensor([[0.1, 0.2, 0.3], [0.5, -0.1, 0.0], [0.2, 0.2, 0.1]]),
    "embedding_positions": torch.tensor([[0, 2], [0, 3], [0, 4]]),
    "embedding_is_target": torch.tensor([False, True, True]),
}


def test_a_registered_head_trains_predicts_and_reloads(tmp_path):
    register_head("test_gaussian")(lambda config, dim: GaussianHead(config.hidden_size, dim))
    try:
        torch.manual_seed(0)
        model = build_world_model(ModelArguments(model_name_or_path=TINY_MODEL),
                                  WorldModelArguments(prediction_head_type="test_gaussian", lm_loss_weight=0.0,
                                                      predict_residual=True), 3)  # around the previous vector
        assert isinstance(model.prediction_head.m, GaussianHead)
        out = model(**BATCH)
        # by hand: hidden states before the two targets, the head's Gaussian NLL around the previous vector
        hidden = model.hidden_states(model.embed(BATCH["input_ids"], BATCH["embedding_vectors"],
                                                 BATCH["embedding_positions"]), None)[0, [2, 3]]
        mean, log_std = model.prediction_head.m(hidden)
        previous, target = BATCH["embedding_vectors"][:2], BATCH["embedding_vectors"][1:]
        nll = (0.5 * ((target - previous - mean) / log_std.exp()) ** 2 + log_std).mean(dim=-1)
        torch.testing.assert_close(out.embedding_loss, nll.mean())
        torch.testing.assert_close(out.predicted_embeddings, previous + mean)
        out.loss.backward()
        assert model.prediction_head.m.net.weight.grad.abs().sum() > 0

        model.eval()
        model.save_pretrained(tmp_path)
        AutoTokenizer.from_pretrained(TINY_MODEL).save_pretrained(tmp_path)
        reloaded = WorldModel.from_pretrained(str(tmp_path))
        with torch.no_grad():
            torch.testing.assert_close(reloaded(**BATCH).predicted_embeddings, model(**BATCH).predicted_embeddings)
    finally:
        PREDICTION_HEADS.pop("test_gaussian")


def test_deterministic_head_in_a_residual_frame():
    class Config:
        hidden_size, embedding_dim, world_model_loss_type, prediction_head_type = 4, 2, "l2", "linear"

    head = build_head(Config())
    hidden = torch.randn(3, 4)
    frame = Frame(shift=torch.tensor([[1.0, 2.0], [0.0, 0.0], [-1.0, 1.0]]), scale=torch.tensor([0.5, 2.0]))
    output = head(hidden)
    expected = frame.shift + output * frame.scale
    torch.testing.assert_close(head.mean(output, frame), expected)
    target = torch.zeros(3, 2)
    torch.testing.assert_close(head.loss(output, target, frame), expected.pow(2).mean(dim=-1))
    samples = head.sample(output, frame, num_samples=4)
    assert samples.shape == (4, 3, 2) and torch.equal(samples[3], expected)
    assert math.isclose(float(frame.to_head(expected)[0, 0]), float(output[0, 0]), rel_tol=1e-5)


def test_mixture_head_likelihood_by_hand_and_safe_on_extremes():
    from wmfactory.model.heads import MixtureHead

    head = MixtureHead(hidden_size=4, embedding_dim=2, components=2)
    logits = torch.tensor([[0.0, math.log(3.0)]])  # weights 1/4 and 3/4
    means = torch.tensor([[[0.0, 0.0], [1.0, -1.0]]])
    log_stds = torch.log(torch.tensor([[[1.0, 1.0], [0.5, 2.0]]]))
    target = torch.tensor([[0.5, 0.5]])
    frame = Frame(shift=torch.tensor([[0.2, -0.2]]), scale=torch.tensor([2.0, 0.5]))
    u = ((target - frame.shift) / frame.scale)[0]

    def normal(x, mu, sigma):
        return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    density = 0.25 * normal(u[0], 0, 1) * normal(u[1], 0, 1) + 0.75 * normal(u[0], 1, 0.5) * normal(u[1], -1, 2)
    expected = (-math.log(density) + math.log(2.0) + math.log(0.5)) / 2  # per dimension, in z units
    loss = head.loss((logits, means, log_stds), target, frame)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    mean = head.mean((logits, means, log_stds), frame)
    torch.testing.assert_close(mean, frame.shift + torch.tensor([[0.75, -0.75]]) * frame.scale)
    # a target far from every component: large but finite, and its gradient too
    hidden = torch.randn(3, 4, requires_grad=True)
    far = head.loss(head(hidden), torch.full((3, 2), 1e6), Frame(torch.zeros(()), torch.ones(())))
    far.sum().backward()
    assert torch.isfinite(far).all() and torch.isfinite(hidden.grad).all()


def test_samples_follow_the_distribution_and_the_seed():
    from wmfactory.model.heads import MixtureHead

    head = MixtureHead(hidden_size=4, embedding_dim=1, components=2)
    params = (torch.tensor([[0.0, 0.0]]), torch.tensor([[[-3.0], [3.0]]]), torch.log(torch.full((1, 2, 1), 0.1)))
    identity = Frame(torch.zeros(()), torch.ones(()))
    draws = head.sample(params, identity, 4000, generator=torch.Generator().manual_seed(1))[:, 0, 0]
    assert abs((draws > 0).float().mean().item() - 0.5) < 0.05  # both modes, equally often
    assert abs(draws.abs().mean().item() - 3.0) < 0.02 and abs(draws.abs().std().item() - 0.1) < 0.01
    again = head.sample(params, identity, 4000, generator=torch.Generator().manual_seed(1))[:, 0, 0]
    assert torch.equal(draws, again)
    cooler = head.sample(params, identity, 4000, temperature=0.5, generator=torch.Generator().manual_seed(1))
    assert abs(cooler[:, 0, 0].abs().std().item() - 0.05) < 0.005
    # below 1 the temperature also sharpens the weights (softmax(logits / T)): 0.7 / 0.3 at T = 0.5 is
    # 0.49 / 0.09 renormalised, 0.845; above 1 they stay as trained
    skewed = (torch.log(torch.tensor([[0.7, 0.3]])), params[1], params[2])
    for temperature, share in ((0.5, 0.49 / 0.58), (1.0, 0.7), (2.0, 0.7)):
        draws = head.sample(skewed, identity, 20000, temperature=temperature,
                            generator=torch.Generator().manual_seed(2))[:, 0, 0]
        assert abs((draws < 0).float().mean().item() - share) < 0.01, temperature


def test_the_diffusion_head_learns_a_two_valued_target():
    """Trained alone on targets that are -1 or +1 at random, its samples land near both values, not at the mean 0."""
    from wmfactory.model.heads import DiffusionHead

    torch.manual_seed(0)
    head = DiffusionHead(hidden_size=4, embedding_dim=1, steps=20, width=64, blocks=2)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    identity = Frame(torch.zeros(()), torch.ones(()))
    condition = torch.ones(256, 4)
    for _ in range(400):
        target = torch.randint(0, 2, (256, 1)).float() * 2 - 1
        loss = head.loss(head(condition), target, identity).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    draws = head.sample(head(condition[:1]), identity, 400, generator=torch.Generator().manual_seed(0))[:, 0, 0]
    near = ((draws - 1).abs() < 0.3) | ((draws + 1).abs() < 0.3)
    assert near.float().mean() > 0.8 and 0.25 < (draws > 0).float().mean() < 0.75
