"""Rollout and prediction with the KV cache agree with a plain recompute over the whole sequence."""

import json

import numpy as np
import pytest
import torch
from conftest import train_args, write_dynamics_dataset

from wmfactory import WorldModel
from wmfactory.inference import (
    Sampling,
    continue_rows,
    continue_stream,
    generate_groups,
    generate_rows,
    rollout_windows,
    teacher_forced,
    teacher_forced_rows,
)
from wmfactory.train.tuner import run_exp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    data_dir = write_dynamics_dataset(tmp / "data", rows=8, varied=True)
    # the persistence frame, which the recomputes below apply by hand (the ridge frame: test_ridge_frame.py)
    run_exp(train_args(tmp / "out", data_dir, finetuning_type="lora", max_steps=5, learning_rate=1e-2,
                       predict_residual=True))
    rows = json.loads((tmp / "data" / "dynamics.json").read_text())
    return WorldModel.from_pretrained(str(tmp / "out")), rows, str(tmp / "data")


def recompute_hidden(model, features, vectors):
    """The decoder over the whole row in one pass, without cache, with `vectors` `[v, d]` at the slots."""
    ids = torch.as_tensor(features["input_ids"])[None]
    positions = torch.as_tensor([[0, p] for p in features["embedding_positions"]]).reshape(-1, 2)
    with torch.no_grad():
        return model.hidden_states(model.embed(ids, torch.as_tensor(vectors), positions), None)[0]


def test_rollout_equals_a_no_cache_recompute_and_prefixes_agree(trained):
    model, rows, data_dir = trained
    features = model.encode_row(rows[0], data_dir)
    rollout = model.rollout(rows[0], steps=12, dataset_dir=data_dir)
    assert rollout.shape == (12, 4) and np.isfinite(rollout).all()
    # append the generated vectors as slots after the row and recompute in one pass
    t = len(features["input_ids"])
    extended = dict(features)
    extended["input_ids"] = features["input_ids"] + [0] * 12
    extended["embedding_positions"] = features["embedding_positions"] + list(range(t, t + 12))
    vectors = np.concatenate([np.asarray(features["embedding_vectors"], dtype=np.float32), rollout])
    hidden = recompute_hidden(model, extended, vectors)
    previous = torch.as_tensor(vectors[len(features["embedding_vectors"]) - 1: -1])  # the vector before each
    with torch.no_grad():
        recomputed = model.vectors_from_hidden(hidden[t - 1: t + 11], previous, torch.ones(12, dtype=torch.bool))[1]
    recomputed = recomputed.numpy()
    np.testing.assert_allclose(rollout, recomputed, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(continue_stream(model, features, 5), rollout[:5], rtol=0, atol=1e-6)


def test_generated_groups_equal_a_recompute_with_generated_inputs(trained):
    model, rows, data_dir = trained
    row = max(rows, key=lambda r: len(r["embeddings"]))
    features = model.encode_row(row, data_dir)
    generated = generate_groups(model, features, context_groups=1)
    assert [g.horizon for g in generated] == list(range(1, len(row["embeddings"])))
    vectors = np.asarray(features["embedding_vectors"], dtype=np.float32).copy()
    for g in generated:
        vectors[g.vector_indices] = g.predicted
        np.testing.assert_array_equal(g.target, np.asarray(features["embedding_vectors"])[g.vector_indices])
    hidden = recompute_hidden(model, features, vectors)
    positions = np.asarray(features["embedding_positions"])
    for g in generated:
        indices = np.asarray(g.vector_indices)
        previous = torch.as_tensor(vectors[indices - 1])  # generated groups never start a row here
        with torch.no_grad():
            again = model.vectors_from_hidden(hidden[positions[indices] - 1], previous,
                                              torch.as_tensor(indices > 0))[1].numpy()
        np.testing.assert_allclose(g.predicted, again, rtol=1e-4, atol=1e-5)


def test_teacher_forced_matches_the_training_forward(trained):
    model, rows, data_dir = trained
    features = model.encode_row(rows[1], data_dir)
    predictions = model.predict_next(rows[1], dataset_dir=data_dir)
    assert [p.key for p in predictions] == [f"m{i}" for i in range(2, len(rows[1]["embeddings"]) + 1)]
    batch = {
        "input_ids": torch.as_tensor(features["input_ids"])[None],
        "embedding_vectors": torch.as_tensor(features["embedding_vectors"]),
        "embedding_positions": torch.as_tensor([[0, p] for p in features["embedding_positions"]]),
        "embedding_is_target": torch.as_tensor(features["embedding_is_target"]),
    }
    with torch.no_grad():
        expected = model(**batch).predicted_embeddings.numpy()
    np.testing.assert_allclose(np.concatenate([p.predicted for p in predictions]), expected, rtol=1e-5, atol=1e-6)
    assert teacher_forced(model, features)[0].occurrence == 0


def test_rows_from_python_in_any_layout_and_rollout_from_the_first_groups(trained):
    model, rows, data_dir = trained
    row = rows[2]
    sharegpt = {"conversations": [{"from": {"user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]}
                                  for m in row["messages"]], "embeddings": row["embeddings"]}
    expected = model.rollout(row, steps=4, dataset_dir=data_dir)
    np.testing.assert_array_equal(model.rollout(sharegpt, steps=4, dataset_dir=data_dir), expected)
    np.testing.assert_array_equal(model.rollout(("dynamics", 2), steps=4, dataset_dir=data_dir), expected)
    # from the first group only: the first vector generated is what teacher forcing predicts for group 1's first
    # vector (the same inputs before it); every group given = the whole row
    first = model.rollout(row, steps=3, dataset_dir=data_dir, context_groups=1)[0]
    group_one = next(p for p in model.predict_next(row, dataset_dir=data_dir) if p.group == 1)
    np.testing.assert_allclose(first, group_one.predicted[0], rtol=1e-5, atol=1e-6)
    whole = model.rollout(row, steps=4, dataset_dir=data_dir, context_groups=len(row["embeddings"]))
    np.testing.assert_array_equal(whole, expected)


def test_sampled_rollouts_of_a_deterministic_head_are_its_mean_rollout(trained):
    """S trajectories run as one batch from a repeated KV cache: with a head whose samples are its mean, each equals
    the rollout computed alone, and teacher-forced samples equal the prediction."""
    model, rows, data_dir = trained
    alone = model.rollout(rows[1], steps=5, dataset_dir=data_dir)
    batch = model.rollout(rows[1], steps=5, dataset_dir=data_dir, num_samples=3, seed=0)
    assert batch.shape == (3, 5, 4)
    for trajectory in batch:
        np.testing.assert_allclose(trajectory, alone, rtol=1e-5, atol=1e-6)
    for group in model.predict_next(rows[1], dataset_dir=data_dir, num_samples=2):
        assert group.samples.shape == (2, *group.predicted.shape)
        np.testing.assert_allclose(group.samples[1], group.predicted, rtol=1e-6, atol=1e-7)
    with pytest.raises(Exception, match="`num_samples` must be a positive integer"):
        model.rollout(rows[1], steps=2, dataset_dir=data_dir, num_samples=0)


def assert_same_predictions(batched, alone, tolerance=1e-5):
    assert len(batched) == len(alone)
    for row_batched, row_alone in zip(batched, alone):
        assert [(g.key, g.occurrence, g.horizon) for g in row_batched] == [
            (g.key, g.occurrence, g.horizon) for g in row_alone]
        for b, a in zip(row_batched, row_alone):
            np.testing.assert_allclose(b.predicted, a.predicted, rtol=tolerance, atol=tolerance)
            np.testing.assert_array_equal(b.target, a.target)
            if a.samples is not None:
                np.testing.assert_allclose(b.samples, a.samples, rtol=tolerance, atol=tolerance)


def test_rows_in_one_batch_predict_what_each_row_predicts_alone(trained):
    """Rows of different lengths, right-padded into one batch, with generated vectors at different positions of
    each row (and rows with nothing to generate): the same predictions as row by row."""
    model, rows, data_dir = trained
    features = [model.encode_row(row, data_dir) for row in rows]
    assert len({len(f["input_ids"]) for f in features}) > 3  # lengths differ
    assert_same_predictions(teacher_forced_rows(model, features), [teacher_forced(model, f) for f in features])
    for context in (1, 3):
        batched = generate_rows(model, features, context)
        assert_same_predictions(batched, [generate_groups(model, f, context) for f in features])
        assert any(groups == [] for groups in batched) == (context == 3)  # short rows: everything given
        assert sum(len(groups) for groups in batched) > 0


def test_sampled_draws_do_not_depend_on_the_batch(trained):
    """A mixture head, whose draws spread: each row draws with its own generator seeded by `seed`, so a row's
    samples are the same alone and in a batch (teacher-forced and generated)."""
    from conftest import tiny_world_model

    model, rows, data_dir = trained
    torch.manual_seed(0)
    mixture = tiny_world_model(prediction_head_type="mixture", mixture_components=3).eval()
    features = [model.encode_row(row, data_dir) for row in rows]
    sampling = Sampling(num_samples=4, seed=3)
    forced = teacher_forced_rows(mixture, features, sampling)
    assert_same_predictions(forced, [teacher_forced(mixture, f, sampling) for f in features])
    assert forced[0][0].samples.std(axis=0).min() > 1e-3  # the draws spread: the comparison means something
    generated = generate_rows(mixture, features, 1, sampling)
    assert_same_predictions(generated, [generate_groups(mixture, f, 1, sampling) for f in features])
    again = generate_rows(mixture, features[::-1][:3], 1, sampling)  # another batch: the same draws per row
    assert_same_predictions(again, [generated[i] for i in (7, 6, 5)])


def test_rollouts_of_several_rows_in_one_batch_equal_each_alone(trained):
    """`rollout` of a list of rows of different lengths: one batch, each row's continuation as alone; with a mixture
    head the sampled trajectories too (each row draws with its own seeded generator)."""
    from conftest import tiny_world_model

    model, rows, data_dir = trained
    together = model.rollout(rows[:5], steps=6, dataset_dir=data_dir)
    assert len(together) == 5
    for row, batched in zip(rows[:5], together):
        np.testing.assert_allclose(batched, model.rollout(row, steps=6, dataset_dir=data_dir), rtol=1e-5, atol=1e-5)
    torch.manual_seed(0)
    mixture = tiny_world_model(prediction_head_type="mixture", mixture_components=3).eval()
    features = [model.encode_row(row, data_dir) for row in rows[:5]]
    sampling = Sampling(num_samples=3, seed=1)
    batched = continue_rows(mixture, features, 4, sampling)
    assert batched[0].shape == (3, 4, 4) and batched[0].std(axis=0).min() > 1e-3
    for f, trajectories in zip(features, batched):
        np.testing.assert_allclose(trajectories, continue_stream(mixture, f, 4, sampling), rtol=1e-5, atol=1e-5)


def test_rollout_windows_tile_the_targets_and_generate_in_one_batch_as_alone(trained):
    """`eval_rollout_steps`' windows: the row's target groups in consecutive runs of `steps`, each cut after its
    last group and given everything before its first; with more runs than `most`, `most` of them spread from the
    first to the last. Windows of different contexts generated in one batch forecast what each does alone."""
    model, rows, data_dir = trained
    features = max((model.encode_row(row, data_dir) for row in rows), key=lambda f: len(f["group_keys"]))
    targets = sorted({g for g, t in zip(features["embedding_groups"], features["embedding_is_target"]) if t})
    assert len(targets) >= 4
    windows = rollout_windows(model, features, steps=2, most=8)
    assert [scored for _, _, scored in windows] == [targets[i: i + 2] for i in range(0, len(targets), 2)]
    assert [given for _, given, _ in windows] == [scored[0] for _, _, scored in windows]
    assert [max(cut["embedding_groups"]) for cut, _, _ in windows] == [scored[-1] for _, _, scored in windows]
    assert [scored for _, _, scored in rollout_windows(model, features, steps=1, most=2)] == [[targets[0]],
                                                                                           [targets[-1]]]
    batched = generate_rows(model, [cut for cut, _, _ in windows], [given for _, given, _ in windows])
    for (cut, given, scored), groups in zip(windows, batched):
        alone = generate_groups(model, cut, context_groups=given)
        assert [g.group for g in groups] == [g.group for g in alone] == list(range(given, scored[-1] + 1))
        for a, b in zip(groups, alone):
            np.testing.assert_allclose(a.predicted, b.predicted, rtol=1e-5, atol=1e-5)
