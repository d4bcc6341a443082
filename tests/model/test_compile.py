"""The training forward pass has no host sync and no data-dependent shape: `torch.compile` traces it as one graph,
and its losses are those of the boolean-mask computation it replaced."""

import pytest
import torch
from conftest import tiny_world_model

from wmfactory.data import WorldModelDataCollator
from wmfactory.extras.constants import IGNORE_INDEX


def varied_batch(d=4):
    """Three rows of different lengths: vectors and targets at different places, labels on some tokens only."""
    collator = WorldModelDataCollator(pad_token_id=2, embedding_dim=d)
    rows = [
        {"input_ids": [5, 6, 2, 2, 7, 8], "labels": [-100, -100, -100, -100, 7, 8], "embedding_positions": [2, 3],
         "embedding_vectors": [[0.1, -0.4, 0.3, 0.9], [0.2, 0.5, -0.7, 0.1]], "embedding_is_target": [False, True]},
        {"input_ids": [5, 2, 9], "labels": [-100, -100, 9], "embedding_positions": [1],
         "embedding_vectors": [[0.3, 0.3, -0.2, 0.0]], "embedding_is_target": [True]},
        {"input_ids": [4, 2, 11, 2, 2, 12, 13, 14], "labels": [-100, -100, 11, -100, -100, 12, -100, 14],
         "embedding_positions": [1, 3, 4],
         "embedding_vectors": [[0.5, 0.1, 0.2, 0.3], [-0.6, 0.2, 0.0, 0.4], [0.7, -0.1, 0.8, -0.5]],
         "embedding_is_target": [False, True, True]},
    ]
    return collator(rows)


def reference_losses(model, batch):
    """The losses computed the way the forward pass did before it gathered with index tensors: boolean masks over
    the vectors and over the labels, counts read to the host."""
    cfg = model.config
    vectors, positions = batch["embedding_vectors"], batch["embedding_positions"]
    targets, labels = batch["embedding_is_target"], batch["labels"]
    z = model.statistics.m.normalize(vectors)
    embeds = model.get_input_embeddings()(batch["input_ids"]).clone()
    embeds[positions[:, 0], positions[:, 1]] = model.projector.m(z).to(embeds.dtype)
    hidden = model.get_decoder()(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
    previous = torch.stack([vectors[i - 1] if i > 0 and positions[i - 1, 0] == positions[i, 0]
                            else torch.zeros_like(vectors[i]) for i in range(len(vectors))])
    has_previous = torch.tensor([i > 0 and bool(positions[i - 1, 0] == positions[i, 0]) for i in range(len(vectors))])
    slots = positions[targets]
    frame = model.head_frame(previous[targets], has_previous[targets])
    params = model.prediction_head.m(hidden[slots[:, 0], slots[:, 1] - 1].float())
    embedding_sum = model.prediction_head.m.loss(params, z[targets], frame).sum()
    num_targets = int(positions[targets].shape[0])
    mask = labels[:, 1:] != IGNORE_INDEX
    logits = model.lm_logits(hidden[:, :-1][mask])
    lm_sum = torch.nn.functional.cross_entropy(logits, labels[:, 1:][mask], reduction="sum")
    num_tokens = int(mask.sum())
    embedding_loss, lm_loss = embedding_sum / max(num_targets, 1), lm_sum / max(num_tokens, 1)
    return embedding_loss, lm_loss, cfg.embedding_loss_weight * embedding_loss + cfg.lm_loss_weight * lm_loss


def test_the_collator_gives_the_indices_of_targets_and_labelled_positions():
    batch = varied_batch()
    assert batch["embedding_target_index"].tolist() == [1, 2, 4, 5]
    # t = 8: row 0 labels tokens 4, 5 (hidden states 3, 4); row 1 token 2 (hidden 1 -> 8 + 1); row 2 tokens 2, 5, 7
    assert batch["lm_label_index"].tolist() == [3, 4, 9, 17, 20, 22]
    flat = batch["labels"].flatten()
    assert flat[batch["lm_label_index"] + 1].tolist() == [7, 8, 9, 11, 12, 14]


@pytest.mark.parametrize("head", ["mlp", "mixture"])
def test_losses_equal_the_boolean_mask_computation(head):
    torch.manual_seed(0)
    model = tiny_world_model(lm_loss_weight=0.5, prediction_head_type=head, predict_residual=True)  # the reference's frame
    model.eval()  # no training noise: both computations see the same inputs
    batch = varied_batch()
    out = model(**batch)
    embedding_loss, lm_loss, loss = reference_losses(model, batch)
    assert isinstance(out.terms.num_targets, torch.Tensor) and isinstance(out.terms.num_tokens, torch.Tensor)
    assert (int(out.terms.num_targets), int(out.terms.num_tokens)) == (4, 6)
    torch.testing.assert_close(out.embedding_loss, embedding_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.lm_loss, lm_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.loss, loss, rtol=1e-6, atol=1e-6)
    # without the collator's indices the pass computes them, and gives the same
    without = {k: v for k, v in batch.items() if k not in ("embedding_target_index", "lm_label_index")}
    torch.testing.assert_close(model(**without).loss, out.loss, rtol=0, atol=0)


def test_the_training_forward_compiles_without_graph_breaks():
    torch.manual_seed(0)
    model = tiny_world_model(lm_loss_weight=0.5)
    model.train()
    batch = varied_batch()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(**batch)
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1
