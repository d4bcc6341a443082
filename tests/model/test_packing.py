"""`packing`: rows packed into shared sequences give the losses and predictions of the same rows unpacked."""

import numpy as np
import pytest
import torch
from conftest import tiny_world_model, train_args, write_dynamics_dataset

from wmfactory.data import WorldModelDataCollator


def rows(d=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for length, slots in ((9, [2, 3, 4]), (5, [1, 2]), (12, [3, 4, 6, 7]), (4, [1, 2])):
        ids = rng.integers(5, 60, size=length).tolist()
        for p in slots:
            ids[p] = 2
        labels = [-100] * 2 + ids[2:]
        for p in slots:
            labels[p] = -100
        out.append({"input_ids": ids, "labels": labels, "embedding_positions": slots,
                    "embedding_vectors": rng.normal(size=(len(slots), d)).tolist(),
                    "embedding_is_target": [False] + [True] * (len(slots) - 1)})
    return out


@pytest.mark.parametrize("head", ["mlp", "mixture"])
def test_packed_rows_give_the_unpacked_losses_and_predictions(head):
    torch.manual_seed(0)
    model = tiny_world_model(embedding_dim=4, finetuning_type="full", lm_loss_weight=0.5,
                             prediction_head_type=head).eval()
    plain = WorldModelDataCollator(pad_token_id=0, embedding_dim=4)(rows())
    packed = WorldModelDataCollator(pad_token_id=0, embedding_dim=4, pack_length=16)(rows())
    # 9 + 5 | 12 + 4: two sequences of 16 instead of four rows padded to 12
    assert packed["input_ids"].shape == (2, 16) and "attention_mask" not in packed
    assert packed["position_ids"][0].tolist() == list(range(9)) + list(range(5)) + [0, 1]
    with torch.no_grad():
        a, b = model(**plain), model(**packed)
    for name in ("embedding_sum", "num_targets", "lm_sum", "num_tokens"):
        assert float(getattr(b.terms, name)) == pytest.approx(float(getattr(a.terms, name)), rel=1e-5, abs=1e-6), name
    assert float(b.loss) == pytest.approx(float(a.loss), rel=1e-5)
    torch.testing.assert_close(b.predicted_embeddings, a.predicted_embeddings, rtol=1e-5, atol=1e-5)


def test_training_with_packing(tmp_path):
    import json

    from wmfactory.train.tuner import run_exp

    data_dir = write_dynamics_dataset(tmp_path / "data", rows=16, varied=True)
    run_exp(train_args(tmp_path / "out", data_dir, packing=True, cutoff_len=256, max_steps=3, logging_steps=1))
    log = [json.loads(line) for line in open(tmp_path / "out" / "trainer_log.jsonl")]
    assert len(log) >= 3 and all(np.isfinite(entry["loss"]) for entry in log if "loss" in entry)


def test_packing_two_streams_keeps_each_rows_previous_state():
    from conftest import TINY_MODEL

    from wmfactory.hparams import ModelArguments, WorldModelArguments
    from wmfactory.model import build_world_model

    torch.manual_seed(0)
    model = build_world_model(ModelArguments(model_name_or_path=TINY_MODEL),
                              WorldModelArguments(condition_streams="a", lm_loss_weight=0.5), {"a": 2, "s": 3}).eval()
    rng = np.random.default_rng(1)
    features = []
    for length, slots in ((8, [1, 2, 3, 4, 5]), (6, [1, 2, 3]), (9, [2, 3, 4, 5, 6])):
        ids = rng.integers(5, 60, size=length).tolist()
        names = ["s", "a"] * 3
        streams = names[: len(slots)]
        features.append({"input_ids": ids, "labels": [-100] + ids[1:], "embedding_positions": slots,
                         "embedding_vectors": [rng.normal(size=3 if n == "s" else 2).tolist() for n in streams],
                         "embedding_is_target": [n == "s" for n in streams],  # as `embedding_targets: all`
                         "embedding_streams": streams})
    plain = WorldModelDataCollator(pad_token_id=0, embedding_dim=3, streams=["a", "s"])(features)
    packed = WorldModelDataCollator(pad_token_id=0, embedding_dim=3, streams=["a", "s"], pack_length=16)(features)
    assert packed["input_ids"].shape[0] == 2  # 8 + 6 | 9
    with torch.no_grad():
        a, b = model(**plain), model(**packed)
    assert float(b.terms.embedding_sum) == pytest.approx(float(a.terms.embedding_sum), rel=1e-5)
    assert float(b.loss) == pytest.approx(float(a.loss), rel=1e-5)
    torch.testing.assert_close(b.predicted_embeddings, a.predicted_embeddings, rtol=1e-5, atol=1e-5)


def test_packed_rows_are_calibrated_as_the_same_rows_unpacked():
    from wmfactory.train.wm.calibration import coverage_by_temperature

    torch.manual_seed(0)
    model = tiny_world_model(embedding_dim=4, finetuning_type="full", prediction_head_type="mixture").eval()
    plain = WorldModelDataCollator(pad_token_id=0, embedding_dim=4)(rows())
    packed = WorldModelDataCollator(pad_token_id=0, embedding_dim=4, pack_length=16)(rows())
    with torch.no_grad():
        pairs = list(zip(model.target_distributions(**plain), model.target_distributions(**packed)))
        assert len(pairs) == 1
        for (_, params_a, frame_a, target_a), (_, params_b, frame_b, target_b) in pairs:
            torch.testing.assert_close(target_b, target_a)
            head = model.stream_part("prediction_head")
            draws = [head.sample(p, f, 16, 1.0, torch.Generator().manual_seed(3))
                     for p, f in ((params_a, frame_a), (params_b, frame_b))]
            torch.testing.assert_close(draws[1], draws[0], rtol=1e-4, atol=1e-5)
    (coverage_a, count_a), (coverage_b, count_b) = (coverage_by_temperature(model, [batch]) for batch in (plain, packed))
    assert count_a == count_b == 7 * 4
    np.testing.assert_allclose(coverage_b, coverage_a)
