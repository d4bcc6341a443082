"""The prediction-head seam: a head registered from outside (the Gaussian of docs/extending.md) trains, predicts,
saves and reloads through the world model without any other change; the deterministic heads' frame arithmetic."""

import math

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
    register_head("test_gaussian")(lambda config: GaussianHead(config.hidden_size, config.embedding_dim))
    try:
        torch.manual_seed(0)
        model = build_world_model(ModelArguments(model_name_or_path=TINY_MODEL),
                                  WorldModelArguments(prediction_head_type="test_gaussian", lm_loss_weight=0.0), 3)
        assert isinstance(model.prediction_head, GaussianHead)
        out = model(**BATCH)
        # by hand: hidden states before the two targets, the head's Gaussian NLL around the previous vector
        hidden = model.hidden_states(model.embed(BATCH["input_ids"], BATCH["embedding_vectors"],
                                                 BATCH["embedding_positions"]), None)[0, [2, 3]]
        mean, log_std = model.prediction_head(hidden)
        previous, target = BATCH["embedding_vectors"][:2], BATCH["embedding_vectors"][1:]
        nll = (0.5 * ((target - previous - mean) / log_std.exp()) ** 2 + log_std).mean(dim=-1)
        torch.testing.assert_close(out.embedding_loss, nll.mean())
        torch.testing.assert_close(out.predicted_embeddings, previous + mean)
        out.loss.backward()
        assert model.prediction_head.net.weight.grad.abs().sum() > 0

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
