"""The inference engine: a row's prefix encoded once and forked into continuations, each with its own conditions,
steps, sampling; per-row isolation of errors; continuing right after a row's last vector."""

from pathlib import Path

import numpy as np
import pytest
import torch

from wmfactory.extras.errors import DataError
from wmfactory.inference import Sampling, Session


def test_forks_with_their_own_actions_equal_rollouts_of_each_alone(action_model):
    model, row, data_dir = action_model
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(5, 3, 3)).astype(np.float32)  # 5 candidates of 3 actions each
    session = Session(model, [model.encode_row(row, data_dir)])
    for _ in range(2):  # a second run starts from the same encoded prefix
        states, fed = session.run(3, forks=5, conditions={"a": torch.from_numpy(actions)})[0].tensors()
        assert states["s"].shape == (5, 3, 2) and fed["a"].shape == (5, 3, 3)
        np.testing.assert_array_equal(fed["a"].numpy(), actions)
        for i in range(5):
            alone = model.rollout(row, 3, dataset_dir=data_dir, conditions={"a": actions[i]})
            np.testing.assert_allclose(states["s"][i].numpy(), alone, rtol=1e-5, atol=1e-6)


def test_rows_with_their_own_steps_conditions_and_seeds_equal_each_alone(action_model):
    model, row, data_dir = action_model
    rng = np.random.default_rng(2)
    features = model.encode_row(row, data_dir)
    actions = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3)]
    session = Session(model, [features] * 3)
    steps = [1, 3, 2]
    sampling = [Sampling(2, None, seed) for seed in (0, 1, 2)]
    made = {i: [] for i in range(3)}
    for continuations in session.stream(steps, conditions=[{"a": torch.from_numpy(a)} for a in actions],
                                        sampling=sampling):
        for i, continuation in enumerate(continuations):
            if continuation.latest is not None:
                made[i].append(continuation.latest[1].clone())
    for i in range(3):
        alone = model.rollout(row, steps[i], dataset_dir=data_dir, conditions={"a": actions[i]}, num_samples=2,
                              seed=i)
        assert alone.shape == (2, steps[i], 2)
        np.testing.assert_allclose(torch.stack(made[i], dim=1).numpy(), alone, rtol=1e-5, atol=1e-6)


def test_a_stopped_row_ends_and_a_failing_row_is_isolated(action_model):
    model, row, data_dir = action_model
    features = model.encode_row(row, data_dir)
    session = Session(model, [features] * 2)
    enough, short = {"a": torch.zeros((3, 3))}, {"a": torch.zeros((1, 3))}  # the second row runs out of actions
    with pytest.raises(DataError, match="beyond the 1 given"):
        session.run(3, conditions=[enough, short])
    last = None
    for last in session.stream(3, conditions=[enough, short], isolate_errors=True):
        pass
    assert last[0].error is None and last[0].tensors()[0]["s"].shape == (1, 3, 2)
    assert "beyond the 1 given" in str(last[1].error) and last[1].generated == 1
    for step, continuations in enumerate(session.stream(3, conditions=enough)):
        if step == 1:
            continuations[1].stop()
    assert continuations[0].generated == 3 and continuations[1].generated == 1


def test_from_last_vector_continues_as_the_training_rows_go_on(action_model):
    model, row, data_dir = action_model
    files = row["embeddings"]
    history = {"messages": [{"role": "user", "content": "<s1><a1><s2><a2><s3>"},
                            {"role": "assistant", "content": "ok"}],
               "embeddings": {key: files[key] for key in ("s1", "a1", "s2", "a2", "s3")}}
    a3 = np.load(Path(data_dir) / files["a3"][0])
    # in the whole row a3 follows s3 and s4 is predicted from a3's position: the same inputs as this continuation
    s4 = next(g for g in model.predict_next(row, dataset_dir=data_dir) if g.key == "s4").predicted[0]
    rolled = model.rollout(history, 1, dataset_dir=data_dir, conditions={"a": a3}, from_last_vector=True)[0]
    np.testing.assert_allclose(rolled, s4, rtol=1e-5, atol=1e-6)
    after_text = model.rollout(history, 1, dataset_dir=data_dir, conditions={"a": a3})[0]
    assert np.abs(after_text - s4).max() > 1e-4  # after the row's text, the inputs differ
