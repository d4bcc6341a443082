"""The warning when the weighted LM loss drowns the embedding loss."""

from conftest import train_args, write_dynamics_dataset

from wmfactory.train.tuner import run_exp
from wmfactory.train.wm.trainer import drowned_embedding_loss


class Config:
    def __init__(self, lm_loss_weight=0.1, embedding_norm="none"):
        self.predicts_embeddings, self.lm_loss_weight, self.embedding_loss_weight = True, lm_loss_weight, 1.0
        self.embedding_norm = embedding_norm


def test_the_ratio_of_the_weighted_losses_decides():
    assert drowned_embedding_loss({"lm_loss": 0.117, "embedding_loss": 0.0004}, Config()) is not None  # 29x
    assert "29 times" in drowned_embedding_loss({"lm_loss": 0.117, "embedding_loss": 0.0004}, Config())
    assert drowned_embedding_loss({"lm_loss": 0.117, "embedding_loss": 0.002}, Config()) is None  # 5.9x
    assert drowned_embedding_loss({"lm_loss": 5.0, "embedding_loss": 1e-9}, Config(0.0)) is None  # no LM head


def test_the_advice_to_normalise_is_given_only_where_normalisation_is_off():
    logs = {"lm_loss": 0.117, "embedding_loss": 0.0004}
    assert "`embedding_norm: standard`" in drowned_embedding_loss(logs, Config(embedding_norm="none"))
    for norm in ("standard", "robust"):
        warning = drowned_embedding_loss(logs, Config(embedding_norm=norm))
        assert "29 times" in warning and "normalise the vectors" not in warning
        assert f"already normalised (`embedding_norm: {norm}`)" in warning


def test_a_run_whose_lm_loss_dominates_is_warned_once(tmp_path, caplog):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    with caplog.at_level("WARNING", logger="wmfactory"):
        run_exp(train_args(tmp_path / "out", data_dir, lm_loss_weight=1000.0, max_steps=3, logging_steps=1))
    warnings = [r.message for r in caplog.records if "the embedding loss is drowned" in r.message]
    assert len(warnings) == 1 and "weighted LM loss (1000 x" in warnings[0]
    assert "normalise the vectors" not in warnings[0]  # the default `embedding_norm: standard` is on
