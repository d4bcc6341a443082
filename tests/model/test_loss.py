import pytest
import torch

from wmfactory.model.loss import LossTerms, combine_losses, embedding_errors

PREDICTED = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
TARGET = torch.tensor([[0.0, 0.0], [1.0, 1.0]])


def test_per_vector_errors_by_hand():
    # l2: ((1-0)^2 + (2-0)^2) / 2 = 2.5 ; ((3-1)^2 + (4-1)^2) / 2 = 6.5
    assert embedding_errors(PREDICTED, TARGET, "l2").tolist() == [2.5, 6.5]
    # l1: (1 + 2) / 2 = 1.5 ; (2 + 3) / 2 = 2.5
    assert embedding_errors(PREDICTED, TARGET, "l1").tolist() == [1.5, 2.5]


@pytest.mark.parametrize("loss_type, embedding_loss", [("l2", 4.5), ("l1", 2.0)])
def test_weighted_sum_by_hand(loss_type, embedding_loss):
    terms = LossTerms(embedding_errors(PREDICTED, TARGET, loss_type).sum(), 2, torch.tensor(3.0), 2)
    loss, emb, lm = combine_losses(terms, embedding_loss_weight=2.0, lm_loss_weight=0.1)
    assert emb.item() == pytest.approx(embedding_loss)
    assert lm.item() == pytest.approx(1.5)
    assert loss.item() == pytest.approx(2.0 * embedding_loss + 0.1 * 1.5)
    # a wider count (all micro-batches of an optimizer step) divides instead of the micro-batch's own
    _, emb_wide, lm_wide = combine_losses(terms, 1.0, 1.0, num_targets=8, num_tokens=torch.tensor(6))
    assert emb_wide.item() == pytest.approx(embedding_loss * 2 / 8)
    assert lm_wide.item() == pytest.approx(3.0 / 6)


def test_no_targets_and_no_labels_give_zero_not_nan():
    empty = embedding_errors(torch.zeros(0, 4), torch.zeros(0, 4), "l2").sum()
    loss, emb, lm = combine_losses(LossTerms(empty, 0, torch.tensor(0.0), 0), 1.0, 0.1)
    assert emb.item() == 0.0 and lm.item() == 0.0 and loss.item() == 0.0
