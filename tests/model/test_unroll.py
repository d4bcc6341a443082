"""`unroll_steps`: the second pass feeds the first pass's predictions at the target slots (with their gradient) and
is scored against the true vectors; the loss is the mean of the passes."""

import pytest
import torch
from conftest import TINY_MODEL, tiny_world_model

from wmfactory.data import WorldModelDataCollator
from wmfactory.extras.errors import ConfigError
from wmfactory.model.heads import previous_vectors


def batch():
    rows = [
        {"input_ids": [5, 2, 2, 2, 8], "labels": [-100] * 5, "embedding_positions": [1, 2, 3],
         "embedding_vectors": [[0.1, 0.4, -0.2], [0.3, 0.1, 0.0], [0.5, -0.2, 0.1]],
         "embedding_is_target": [False, True, True]},
        {"input_ids": [5, 6, 2, 2], "labels": [-100] * 4, "embedding_positions": [2, 3],
         "embedding_vectors": [[-0.3, 0.2, 0.2], [0.0, 0.6, -0.1]], "embedding_is_target": [False, True]},
    ]
    return WorldModelDataCollator(pad_token_id=2, embedding_dim=3)(rows)


def pass_by_hand(model, b, own):
    """One pass fed `own` at the target slots instead of the true vectors -> (its loss per target against the true
    vectors, its forecasts in data units)."""
    targets, positions = b["embedding_is_target"], b["embedding_positions"]
    fed = b["embedding_vectors"].clone()
    fed[targets] = own
    hidden = model.hidden_states(model.embed(b["input_ids"], fed, positions), b["attention_mask"])
    previous, has_previous = previous_vectors(fed, positions)
    frame = model.head_frame(previous[targets], has_previous[targets])
    slots = positions[targets]
    params = model.prediction_head.m(hidden[slots[:, 0], slots[:, 1] - 1])
    truth = model.statistics.m.normalize(b["embedding_vectors"][targets])
    mean = model.statistics.m.denormalize(model.prediction_head.m.mean(params, frame))
    return model.prediction_head.m.loss(params, truth, frame), mean


def test_two_passes_average_the_loss_of_forecasts_from_own_predictions():
    torch.manual_seed(0)
    model = tiny_world_model(embedding_dim=3, finetuning_type="full", lm_loss_weight=0, unroll_steps=2,
                             predict_residual=True)
    model.train()
    b = batch()
    unrolled = model(**b).terms.embedding_sum
    model.config.unroll_steps = 1
    first = model(**b)
    # the second pass by hand: the first pass's predictions at the target slots, scored against the truth
    second, _ = pass_by_hand(model, b, first.predicted_embeddings)
    expected = (first.terms.embedding_sum + second.sum()) / 2
    assert unrolled.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(second.sum().item() - first.terms.embedding_sum.item()) > 1e-6  # the passes differ
    # and the same gradients: the second pass trains the first one through its predictions
    parameters = [p for p in model.parameters() if p.requires_grad]
    for got, want in zip(torch.autograd.grad(unrolled, parameters, allow_unused=True),
                         torch.autograd.grad(expected, parameters, allow_unused=True)):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_unroll_needs_a_differentiable_mean():
    with pytest.raises(ConfigError, match="unroll_steps"):
        tiny_world_model(embedding_dim=3, prediction_head_type="diffusion", unroll_steps=2)


def test_the_stage_wm_default_unrolls_the_heads_whose_mean_is_cheap_and_leaves_the_others_at_one(tmp_path):
    from wmfactory.hparams import get_train_args
    from wmfactory.train.wm.workflow import _build_world_model

    base = ["--stage", "wm", "--model_name_or_path", TINY_MODEL, "--dataset", "d", "--output_dir", str(tmp_path)]
    for head, steps in (("mlp", 2), ("mixture", 2), ("diffusion", 1)):
        args = get_train_args(base + ["--prediction_head_type", head])
        assert "unroll" in args.data_defaults and args.world_model.unroll_steps == 2  # decided at model build
        model = _build_world_model(args, 3)
        assert model.config.unroll_steps == args.world_model.unroll_steps == steps, head
    # a run's own `unroll_steps` is its choice: the model refuses it with the diffusion head
    args = get_train_args(base + ["--prediction_head_type", "diffusion", "--unroll_steps", "2"])
    assert "unroll" not in args.data_defaults
    with pytest.raises(ConfigError, match="unroll_steps"):
        _build_world_model(args, 3)


def test_each_pass_feeds_the_previous_passs_forecasts():
    torch.manual_seed(1)
    model = tiny_world_model(embedding_dim=3, finetuning_type="full", lm_loss_weight=0, unroll_steps=3,
                             predict_residual=True)
    model.train()
    b = WorldModelDataCollator(pad_token_id=2, embedding_dim=3)([  # three targets: pass 3 forecasts the last from two
        {"input_ids": [5, 2, 2, 2, 2, 8], "labels": [-100] * 6, "embedding_positions": [1, 2, 3, 4],
         "embedding_vectors": [[0.1, 0.4, -0.2], [0.3, 0.1, 0.0], [0.5, -0.2, 0.1], [0.2, 0.2, -0.3]],
         "embedding_is_target": [False, True, True, True]}])
    with torch.no_grad():
        for p in model.prediction_head.parameters():  # its last layer starts at zero: make forecasts read the LLM
            p.normal_(0, 0.3)
        unrolled = model(**b).terms.embedding_sum
        model.config.unroll_steps = 1
        first = model(**b)
        second, own = pass_by_hand(model, b, first.predicted_embeddings)
        third, _ = pass_by_hand(model, b, own)
        second, third = second.sum(), third.sum()
    assert abs(third.item() - second.item()) > 1e-6  # the third pass reads the second's forecasts, not the first's
    assert unrolled.item() == pytest.approx((first.terms.embedding_sum + second + third).item() / 3, rel=1e-5)
