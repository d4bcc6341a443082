"""`missing_values: mask`: NaN entries are read only when asked, left out of the statistics and of every head's loss,
enter the projector as the frame's fill from the vectors before them beside an indicator, fill the frames from
older vectors, and are not scored by eval."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import distribution_scores, train_args, write_dataset

from wmfactory.data import from_dataframe
from wmfactory.data.embeddings import load_embedding
from wmfactory.eval.metrics import forecast_metrics, forward_filled, seasonal_scale
from wmfactory.extras.errors import ConfigError, DataError
from wmfactory.hparams import WorldModelArguments
from wmfactory.inference import context_features, generate_groups
from wmfactory.inference.engine import continue_stream
from wmfactory.inference.rows import fills_kept
from wmfactory.model.heads import Frame, MixtureHead, QuantileHead, fill_missing_history
from wmfactory.model.loss import embedding_errors
from wmfactory.model.statistics import EmbeddingStatistics


def test_nan_is_refused_with_todays_message_unless_masked(tmp_path):
    np.save(tmp_path / "gap.npy", np.array([[1.0, np.nan, 2.0]], dtype=np.float32))
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.inf, 2.0]], dtype=np.float32))
    with pytest.raises(DataError, match=r"values are not all finite \(NaN or Inf\)"):
        load_embedding("gap.npy", str(tmp_path))
    kept = load_embedding("gap.npy", str(tmp_path), missing_values="mask")
    assert kept[0, 0] == 1.0 and math.isnan(kept[0, 1]) and kept[0, 2] == 2.0
    for policy in ("refuse", "mask"):  # an infinity is never a missing value
        with pytest.raises(DataError, match="not all finite"):
            load_embedding("inf.npy", str(tmp_path), missing_values=policy)
    with pytest.raises(ConfigError, match="diffusion head denoises whole vectors"):
        WorldModelArguments(missing_values="mask", prediction_head_type="diffusion")
    with pytest.raises(ConfigError, match="`missing_values` must be refuse or mask"):
        WorldModelArguments(missing_values="drop")


def test_statistics_leave_missing_entries_out():
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(9, 2)) * [1.0, 3.0] + [0.0, 5.0] for _ in range(6)]
    for x in rows:
        x[rng.random(x.shape) < 0.25] = np.nan
    stats = EmbeddingStatistics(2, ridge_history=1)
    stats.fit(rows, "standard")
    values = np.concatenate(rows)
    np.testing.assert_allclose(stats.mean.numpy(), np.nanmean(values, axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats.std.numpy(), np.nanstd(values, axis=0), rtol=1e-5)
    z = [(x - np.nanmean(values, 0)) / np.nanstd(values, 0) for x in rows]
    steps = np.concatenate([np.diff(r, axis=0) for r in z])  # NaN where either end is missing
    np.testing.assert_allclose(stats.delta_scale.numpy(), np.nanstd(steps, axis=0), rtol=1e-4)
    # the ridge on one vector: the transitions whose input and target are whole
    inputs, targets = [], []
    for x in rows:
        for t in range(1, len(x)):
            if not np.isnan(x[t]).any() and not np.isnan(x[t - 1]).any():
                inputs.append(x[t - 1])
                targets.append(x[t])
    features = np.concatenate([np.array(inputs), np.ones((len(inputs), 1))], axis=1)
    n, variance = len(features), np.var(np.array(inputs), axis=0)
    penalty = np.diag(np.append(1e-3 * n * variance, 0.0))
    expected = np.linalg.solve(features.T @ features + penalty, features.T @ np.array(targets))
    np.testing.assert_allclose(stats.ridge.numpy(), expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_every_head_scores_the_observed_entries_only():
    torch.manual_seed(0)
    target = torch.tensor([[0.5, float("nan"), -1.0], [float("nan")] * 3])
    observed = ~torch.isnan(target)
    predicted = torch.tensor([[0.0, 9.0, 1.0], [2.0, 2.0, 2.0]])
    identity = Frame(shift=torch.zeros(()), scale=torch.ones(()))
    l2 = embedding_errors(predicted, target, "l2", observed)
    assert l2.tolist() == pytest.approx([(0.25 + 4.0) / 2, 0.0])  # the mean over the observed entries; none: 0
    l1 = embedding_errors(predicted, target, "l1", observed)
    assert l1.tolist() == pytest.approx([(0.5 + 2.0) / 2, 0.0])

    # the mixture's loss on the observed entries = the loss of the same mixture cut to those dimensions
    head = MixtureHead(8, 3, components=2)
    params = head(torch.randn(1, 8))
    masked = head.loss(params, target[:1], identity, observed[:1])
    logits, means, log_stds = params
    cut = MixtureHead(8, 2, components=2)
    expected = cut.loss((logits, means[..., [0, 2]], log_stds[..., [0, 2]]), target[:1, [0, 2]], identity)
    assert masked.item() == pytest.approx(expected.item(), rel=1e-6)

    quantile = QuantileHead(8, 3)
    q = quantile(torch.randn(1, 8))  # [1, Q, 3]
    levels = torch.tensor(QuantileHead.LEVELS)
    pinball = []
    for dim in (0, 2):
        error = target[0, dim] - q[0, :, dim]
        pinball.append(torch.maximum(levels * error, (levels - 1) * error).mean())
    got = quantile.loss(q, target[:1], identity, observed[:1])
    assert got.item() == pytest.approx(float(sum(pinball) / 2), rel=1e-6)


def test_frames_fill_a_missing_entry_from_the_older_vectors_then_the_mean():
    nan = float("nan")
    history = torch.tensor([[[nan, 1.0], [nan, nan], [3.0, nan]],     # most recent first, three real
                            [[nan, 2.0], [nan, nan], [0.0, 0.0]]])    # two real, one padding
    count, mean = torch.tensor([3, 2]), torch.tensor([10.0, 20.0])
    filled = fill_missing_history(history, count, mean)  # no ridge: the older vector's value
    assert filled[0].tolist() == [[3.0, 1.0], [3.0, 20.0], [3.0, 20.0]]
    assert filled[1].tolist() == [[10.0, 2.0], [10.0, 20.0], [0.0, 0.0]]
    # with ridges: the one-step forecast from the filled older vectors; ridge j: x_next = 2 * x_last + j (per dim)
    ridges = {j: torch.cat([2 * torch.eye(2), torch.zeros(2 * (j - 1), 2), torch.full((1, 2), float(j))])
              for j in (1, 2)}
    filled = fill_missing_history(history, count, mean, ridges.__getitem__)
    oldest = [3.0, 20.0]                                   # no older vector in the window: the mean
    middle = [2 * 3.0 + 1, 2 * 20.0 + 1]                   # ridge 1 on the oldest
    recent = [2 * middle[0] + 2, 1.0]                      # ridge 2 on the two older ones (weights on the last)
    assert filled[0].tolist() == [recent, middle, oldest]
    assert filled[1].tolist() == [[2 * 10.0 + 1, 2.0], [10.0, 20.0], [0.0, 0.0]]


def test_eval_scores_observed_entries_and_baselines_read_a_filled_history():
    target = np.array([[1.0, np.nan], [2.0, 4.0]])
    predicted = np.array([[0.0, 100.0], [2.0, 1.0]])
    scores = forecast_metrics(predicted, target, np.array([0, 1]))
    assert scores["mse"] == pytest.approx((1.0 + 0.0 + 9.0) / 3)
    assert scores["mae"] == pytest.approx((1.0 + 0.0 + 3.0) / 3)
    samples = np.stack([predicted, predicted + 1.0], axis=1)  # [n, S, d]
    crps = distribution_scores(samples, target)["crps"]
    fair = np.abs(samples - target[:, None]).mean(1) - 0.5 * np.abs(samples[:, 1] - samples[:, 0])  # [n, d]
    assert crps == pytest.approx(np.nanmean(fair))
    stream = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, 3.0]])
    assert forward_filled(stream, np.array([7.0, 8.0])).tolist() == [[7.0, 1.0], [2.0, 1.0], [2.0, 3.0]]
    scale = seasonal_scale(np.array([[1.0, 1.0], [np.nan, 2.0], [4.0, 4.0], [6.0, np.nan]]), 3)
    assert scale.tolist() == pytest.approx([2.0, 1.5])  # the observed pairs of each dimension


def _gappy_dataset(path, rows=16, steps=8, d=3, seed=0):
    rng = np.random.default_rng(seed)
    (path / "v").mkdir(parents=True)
    data = []
    for r in range(rows):
        x = np.cumsum(rng.normal(size=(steps, d)), axis=0)
        x[rng.random(x.shape) < 0.2] = np.nan
        files = {}
        for t in range(steps):
            np.save(path / "v" / f"{r}_{t}.npy", x[t].astype(np.float32))
            files[f"m{t + 1}"] = [f"v/{r}_{t}.npy"]
        content = "".join(f"<m{t + 1}>" for t in range(steps))
        data.append({"messages": [{"role": "user", "content": content}], "embeddings": files})
    return write_dataset(path, "dynamics", data)


def test_a_masked_model_trains_saves_and_rolls_out_from_a_gappy_history(tmp_path, caplog):
    from wmfactory.eval.report import evaluate_rows
    from wmfactory.model import WorldModel
    from wmfactory.train.tuner import run_exp

    data = tmp_path / "data"
    _gappy_dataset(data)
    with pytest.raises(DataError, match="values are not all finite"):  # without the key: today's refusal
        run_exp(train_args(tmp_path / "refused", data, embedding_targets="all"))
    run_exp(train_args(tmp_path / "out", data, embedding_targets="all", missing_values="mask", max_steps=4))
    assert "`world_model_loss_type: l1` learns much more" in caplog.text  # the default l2 under mask: warned
    model = WorldModel.from_pretrained(str(tmp_path / "out"))
    assert model.config.missing_values == "mask"
    assert model.projector.m[0].in_features == 2 * 3  # [z * observed, observed]
    # the projector's input at a vector with a missing entry, computed by hand
    vector = torch.tensor([[1.0, float("nan"), -2.0]])
    z = model.statistics.m.normalize(vector)
    by_hand = model.projector.m(torch.tensor([[z[0, 0].item(), 0.0, z[0, 2].item(), 1.0, 0.0, 1.0]]))
    torch.testing.assert_close(model.project(vector), by_hand)
    # inside a row, a missing entry enters as the ridge's forecast of it from the vector before it (the first
    # vector's, with nothing before it, as the training mean: 0 normalised)
    older = torch.tensor([0.5, 1.0, -1.0])
    row = torch.stack([torch.tensor([float("nan"), 2.0, 0.0]), older, vector[0]])  # [3, 3]: rows 0, 1, 1
    slots = torch.tensor([[0, 1], [1, 1], [1, 3]])
    forecast = torch.cat([older, torch.ones(1)]) @ model.statistics.m.ridge_on(1)
    fill = model.missing_fill(row, slots)
    assert abs(fill[0, 0].item()) < 1e-3
    expected = model.statistics.m.normalize(forecast[None])[0, 1].item()
    assert abs(fill[2, 1].item() - expected) < 1e-3 * max(1.0, abs(expected))
    embedded = model.embed(torch.zeros((2, 4), dtype=torch.long), row, slots)
    z_row = model.statistics.m.normalize(row[2:])
    by_hand = model.projector.m(torch.tensor([[z_row[0, 0].item(), expected, z_row[0, 2].item(), 1.0, 0.0, 1.0]]))
    torch.testing.assert_close(embedded[1, 3], by_hand[0].to(embedded.dtype), atol=1e-4, rtol=1e-4)
    features = model.encode_row(("dynamics", 0), str(data))
    assert np.isnan(np.asarray(features["embedding_vectors"], dtype=np.float32)).any()
    future = model.rollout(("dynamics", 0), 3, dataset_dir=str(data))
    assert future.shape == (3, 3) and np.isfinite(future).all()
    report = evaluate_rows(model, [features], context_groups=4)
    scored = report["teacher_forced"]
    assert scored["vectors"] > 0 and np.isfinite(scored["model"]["mse"]) and np.isfinite(scored["ridge"]["mse"])
    _check_gaps_filled_as_most_likely(model, features)
    _check_served_rows_may_hold_missing_entries(model)


def _check_served_rows_may_hold_missing_entries(model):
    """`wmfactory api` serving a masked model: a missing entry of a row's vector is `null` (or NaN in base64), and
    the answer is the in-process rollout's; an infinity stays refused."""
    from fastapi.testclient import TestClient

    from wmfactory.api.app import Limits, create_app
    from wmfactory.api.batching import Engine

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(5, 3)).round(3)
    vectors[[1, 3], [2, 0]] = np.nan
    row = {"messages": [{"role": "user", "content": "".join(f"<m{t + 1}>" for t in range(5))}],
           "embeddings": {f"m{t + 1}": [[None if np.isnan(x) else float(x) for x in vectors[t]]] for t in range(5)}}
    expected = model.rollout({**row, "embeddings": {k: [np.asarray(v[0], dtype=np.float32)[None]]
                                                    for k, v in row["embeddings"].items()}}, 2)
    with TestClient(create_app(model, Engine(model, 0.0), Limits())) as client:
        answer = client.post("/v1/rollout", json={"row": row, "steps": 2})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["vectors"], expected, rtol=1e-4, atol=1e-4)
        broken = {**row, "embeddings": {**row["embeddings"], "m2": [[1.0, 2.0, "Infinity"]]}}
        refused = client.post("/v1/rollout", content=json.dumps({"row": broken, "steps": 2}).replace(
            '"Infinity"', "Infinity"))
        assert refused.status_code == 422 and "`row.embeddings.m2[0]` holds an infinity" in refused.text


def _check_gaps_filled_as_most_likely(model, features):
    """`fill_gaps` on a history with one gap finds the value that minimises the model's own teacher-forced loss of
    the history (a grid of values through `forward` finds no lower one), and a rollout reads the history so filled."""
    vectors = torch.nan_to_num(torch.as_tensor(np.asarray(features["embedding_vectors"], dtype=np.float32)), 0.5)
    vectors[3, 1] = float("nan")  # one gap, in the middle of the history
    ids = torch.as_tensor(features["input_ids"])[None]
    slots = torch.stack([torch.zeros(len(vectors), dtype=torch.long), torch.as_tensor(features["embedding_positions"])],
                        dim=1)
    targets = torch.as_tensor(features["embedding_is_target"])
    assert model.fill_gaps(ids, vectors, slots, targets, steps=0) is None  # 0: the linear fill stays
    filled = model.fill_gaps(ids, vectors, slots, targets, steps=300)
    observed = ~torch.isnan(vectors)
    assert torch.equal(filled[observed], vectors[observed]) and torch.isfinite(filled).all()

    def loss_at(value: float) -> float:
        complete = vectors.clone()
        complete[3, 1] = value
        return model(ids, embedding_vectors=complete, embedding_positions=slots,
                     embedding_is_target=targets).embedding_loss.item()

    std = model.statistics.m.std[1].item()
    center = model.statistics.m.mean[1].item()
    grid = [loss_at(center + std * x) for x in np.linspace(-4, 4, 161)]
    found = loss_at(filled[3, 1].item())
    assert found <= min(grid) + 1e-6 and found < max(grid)
    linear = model.denormalize_streams(model.missing_fill(vectors, slots), None)[3, 1].item()  # where it started
    assert found <= loss_at(linear)
    # a rollout after the row reads the filled history: the same as from the row given complete
    gappy = dict(features, embedding_vectors=vectors.numpy())
    complete = dict(features, embedding_vectors=filled.numpy())
    model.config.missing_fill_steps = 300
    try:
        np.testing.assert_allclose(continue_stream(model, gappy, 2), continue_stream(model, complete, 2), atol=1e-5)
        # generated after the first 5 groups: their gaps solved from them alone (the same fill on the prefix)
        prefix = context_features(gappy, 5)
        p_ids = torch.as_tensor(prefix["input_ids"])[None]
        p_vectors = torch.as_tensor(np.asarray(prefix["embedding_vectors"], dtype=np.float32))
        p_filled = model.fill_gaps(p_ids, p_vectors, slots[:5], targets[:5], steps=300)
        solved = dict(features, embedding_vectors=torch.cat([p_filled, vectors[5:]]).numpy())
        calls = []
        fill_gaps = model.fill_gaps
        model.fill_gaps = lambda *args, **kw: calls.append(1) or fill_gaps(*args, **kw)
        try:
            with fills_kept(model):  # the same history twice: solved once
                for _ in range(2):
                    got = [g.predicted for g in generate_groups(model, gappy, context_groups=5)]
                    want = [g.predicted for g in generate_groups(model, solved, context_groups=5)]
                    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), atol=1e-5)
        finally:
            model.fill_gaps = fill_gaps
        assert len(calls) == 1
        model.config.missing_fill_steps = 0
        assert not np.allclose(continue_stream(model, gappy, 2), continue_stream(model, complete, 2), atol=1e-5)
    finally:
        model.config.missing_fill_steps = WorldModelArguments().missing_fill_steps


def test_tables_accept_missing_targets_when_asked(tmp_path):
    df = pd.DataFrame({"id": "a", "t": pd.date_range("2021-01-01", periods=6, freq="D"),
                       "y": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0], "x": np.arange(6.0)})
    with pytest.raises(DataError, match=r"column 'y' has a missing or infinite value .*missing_values=\"mask\""):
        from_dataframe(df, "id", "t", "y", out_dir=str(tmp_path / "a"), context_length=3, prediction_length=1)
    from_dataframe(df, "id", "t", "y", out_dir=str(tmp_path / "b"), context_length=3, prediction_length=1,
                   missing_values="mask")
    written = load_embedding("table_vectors/0/y1.safetensors", str(tmp_path / "b"), missing_values="mask")
    assert written.shape == (1, 1) and math.isnan(written[0, 0])
    with pytest.raises(DataError, match="column 'x' has a missing or infinite value"):  # covariates: never
        from_dataframe(df.assign(x=[np.nan] + [1.0] * 5), "id", "t", "y", known_covariates=["x"],
                       out_dir=str(tmp_path / "c"), context_length=3, prediction_length=1, missing_values="mask")


def test_frames_solve_a_windows_gaps_from_the_vectors_before_and_after_them():
    # an exact linear system x_next = A x + b: its ridges on the last 1 and 2 vectors are known in closed form
    a, b = torch.tensor([[0.9, -0.3], [0.2, 0.8]]), torch.tensor([0.5, -1.0])
    ridges = {1: torch.cat([a.T, b[None]]), 2: torch.cat([a.T, torch.zeros(2, 2), b[None]])}
    states = [torch.tensor([1.0, 2.0])]
    for _ in range(2):
        states.append(a @ states[-1] + b)
    truth = torch.stack(states[::-1])  # [3, 2], most recent first
    nan = float("nan")
    history = truth.clone()[None].repeat(2, 1, 1)
    history[0, 2, 0] = nan           # the oldest vector: only the vectors after it know it
    history[1, 1, 1] = nan           # the middle one, and the oldest's other entry
    history[1, 2, 0] = nan
    count, mean, scale = torch.tensor([3, 3]), torch.tensor([10.0, 20.0]), torch.tensor([1.0, 2.0])
    filled = fill_missing_history(history, count, mean, ridges.__getitem__, scale)
    assert torch.allclose(filled, truth[None].expand(2, 3, 2), atol=1e-4)
    forward = fill_missing_history(history, count, mean, ridges.__getitem__)  # without `scale`: oldest first
    assert forward[0, 2, 0].item() == 10.0  # the oldest vector's gap is the mean there
    # a window of two real vectors and padding: the padding stays 0, the gap is solved from the one after it
    short = torch.cat([truth[1:], torch.zeros(1, 2)])[None].clone()
    short[0, 1, 1] = nan
    filled = fill_missing_history(short, torch.tensor([2]), mean, ridges.__getitem__, scale)
    assert torch.allclose(filled[0, :2], truth[1:], atol=1e-4) and filled[0, 2].tolist() == [0.0, 0.0]


def test_refills_feed_the_models_own_fill_keep_the_loss_on_observed_entries_and_resume_exactly(tmp_path, caplog):
    """`missing_refills`: at the refill step every training row's gaps are filled by the model as it stands
    (`fill_row_gaps`); the steps after read them as observed while the loss still reads the observed entries only;
    the fills are saved with the checkpoint, and a run resumed from it logs the uninterrupted run's losses."""
    import shutil

    from wmfactory.inference.rows import RowTensors, fill_row_gaps
    from wmfactory.model import WorldModel
    from wmfactory.train.tuner import run_exp
    from wmfactory.train.wm.refill import FILLS_FILE, load_fills, refill_steps, save_fills

    for bad in ({"missing_refills": 1}, {"missing_refills": 1, "missing_values": "mask", "missing_fill_steps": 0}):
        with pytest.raises(ConfigError, match="needs `missing_values: mask` and `missing_fill_steps` above 0"):
            WorldModelArguments(**bad)
    with pytest.raises(ConfigError, match="`missing_refills` must be an integer from 0 to 100, got -1"):
        WorldModelArguments(missing_values="mask", missing_refills=-1)
    assert refill_steps(6, 1) == [3] and refill_steps(10, 3) == [2, 5, 8] and refill_steps(1, 1) == []

    data = tmp_path / "data"
    _gappy_dataset(data)
    keys = dict(embedding_targets="all", missing_values="mask", world_model_loss_type="l1", missing_refills=1,
                missing_fill_steps=20, max_steps=6, save_strategy="steps", save_steps=3, learning_rate=3e-3)
    run_exp(train_args(tmp_path / "a", data, **keys))
    assert "the gaps of 16 training rows filled by the model at step 3" in caplog.text
    checkpoint = tmp_path / "a" / "checkpoint-3"
    saved = {i: fill.numpy().reshape(-1) for i, fill in
             load_fills(str(checkpoint / FILLS_FILE), _Rows(data), 3).items()}

    # the saved fills are the checkpoint's model's own fill of each row: the observed entries as given, no NaN
    model = WorldModel.from_pretrained(str(checkpoint))
    model.config.missing_fill_steps = 20
    assert len(saved) == 16
    for index in (0, 7):
        features = model.encode_row(("dynamics", index), str(data))
        given = np.asarray(features["embedding_vectors"], dtype=np.float32).reshape(-1)
        match = [i for i, fill in saved.items() if np.array_equal(fill[~np.isnan(given)], given[~np.isnan(given)])]
        assert len(match) == 1
        row = RowTensors(model, features)
        fill_row_gaps(model, [row])
        np.testing.assert_allclose(saved[match[0]], row.fed.numpy().reshape(-1), atol=1e-5)
        assert np.isfinite(saved[match[0]]).all() and np.isnan(given).any()

        # the model reads `embedding_fed`; the loss reads `embedding_vectors`, observed entries only
        ids = torch.as_tensor(features["input_ids"])[None]
        slots = torch.stack([torch.zeros(len(row.vectors), dtype=torch.long), row.positions], dim=1)
        targets = torch.as_tensor(features["embedding_is_target"])
        gappy = torch.as_tensor(given.reshape(row.vectors.shape))
        fed = torch.as_tensor(saved[match[0]].reshape(row.vectors.shape))
        both = model(ids, embedding_vectors=gappy, embedding_positions=slots, embedding_is_target=targets,
                     embedding_fed=fed)
        as_complete = model(ids, embedding_vectors=fed, embedding_positions=slots, embedding_is_target=targets)
        torch.testing.assert_close(both.predicted_embeddings, as_complete.predicted_embeddings)
        z_true = model.statistics.m.normalize(gappy[targets])
        z_predicted = model.statistics.m.normalize(both.predicted_embeddings)
        seen = ~torch.isnan(z_true)
        by_hand = torch.stack([(z_predicted[i] - z_true[i])[seen[i]].abs().mean() for i in range(len(z_true))]).mean()
        assert abs(both.embedding_loss.item() - by_hand.item()) < 1e-5
        assert abs(as_complete.embedding_loss.item() - by_hand.item()) > 1e-4  # the filled entries scored too

    def resumed(name, **changes):
        out = tmp_path / name
        out.mkdir()
        shutil.copytree(checkpoint, out / "checkpoint-3")
        if changes.pop("drop_fills", False):
            (out / "checkpoint-3" / FILLS_FILE).unlink()
        run_exp(train_args(out, data, **{**keys, **changes, "overwrite_output_dir": False}))
        return [json.loads(line)["loss"] for line in (out / "trainer_log.jsonl").read_text().splitlines()][-3:]

    uninterrupted = [json.loads(line)["loss"] for line in
                     (tmp_path / "a" / "trainer_log.jsonl").read_text().splitlines()][-3:]
    assert resumed("b") == pytest.approx(uninterrupted, rel=1e-6, abs=1e-9)
    # DataLoader workers collate batches in other processes: each batch is given its fills when its step runs
    run_exp(train_args(tmp_path / "workers", data, **keys, dataloader_num_workers=1))
    assert [json.loads(line)["loss"] for line in (tmp_path / "workers" / "trainer_log.jsonl").read_text().splitlines()
            ][-3:] == pytest.approx(uninterrupted, rel=1e-6, abs=1e-9)
    # without the file the resumed model fills the rows again (here the same model that filled them): warned
    assert resumed("c", drop_fills=True) == pytest.approx(uninterrupted, rel=1e-5, abs=1e-8)
    assert f"holds no {FILLS_FILE} although the rows were filled at step 3" in caplog.text
    # the fills matter: resumed without them, the same steps log other losses
    assert resumed("d", missing_refills=0) != pytest.approx(uninterrupted, rel=1e-4)

    # fills made for other rows are refused, naming the row
    tampered = {i: torch.as_tensor(fill).reshape(-1, 3) for i, fill in saved.items()}
    index = next(iter(tampered))
    tampered[index] = tampered[index] + 1.0
    save_fills(str(tmp_path / "tampered.safetensors"), tampered)
    with pytest.raises(DataError, match=f"the fill of training row {index} does not match"):
        load_fills(str(tmp_path / "tampered.safetensors"), _Rows(data), 3)


class _Rows:
    """The rows of `_gappy_dataset` in their file's order, as `ArrowBatches` gives them (`embedding_vectors`)."""

    def __init__(self, data):
        rows = json.loads((data / "dynamics.json").read_text())
        self.rows = [[np.load(data / row["embeddings"][f"m{t + 1}"][0]) for t in range(len(row["embeddings"]))]
                     for row in rows]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return {"embedding_vectors": self.rows[index], "embedding_groups": list(range(len(self.rows[index])))}
