"""World-model quality against the classical baselines, on the datasets of `sources.py`.

For each dataset: write it as a wmfactory dataset folder, train the tiny model with the recipe below (the README's
recommended one; `--set key=value` changes a key), and score on the test rows, teacher-forced and rolled out from
`context` given states to `horizon`, the same vectors for every forecaster:

- the world model;
- persistence, linear extrapolation and the training mean;
- ridge regression on the last k = 1, 2, 3 states (and the conditions applied after them), fitted on the training
  rows, the penalty chosen on a fifth of them held out;
- a GRU (one layer, 128 units, predicting the step in normalised units) trained directly on the same rows for the
  same wall-clock time as the world model's training loop.

The scale-free score is each forecaster's MSE divided by persistence's; a table gives the geometric mean of that
score across datasets (as Chronos and GIFT-Eval rank models). The last tables give the rollouts' MASE and WQL relative
to the seasonal naive forecast, with AutoETS (statsforecast) where the histories are long enough, and their geometric
means (`forecasting_scores`).

    pip install -r benchmarks/quality/requirements.txt && pip install --no-deps aeon==1.6.0
    python benchmarks/quality/run.py [--datasets speech power ...] [--steps 600] [--set predict_residual=true]
    python benchmarks/quality/run.py --defaults   # wmfactory's defaults instead of the recipe
    python benchmarks/quality/run.py --from_results saves/a/results.json saves/b/results.json  # one table

Writes `saves/quality/results.json` and `saves/quality/quality.md` (the tables of docs/quality.md).
"""

import argparse
import json
import os
import shutil
import sys
import time
from typing import Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "src"))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sources import BUILDERS, Dataset  # noqa: E402

# the README's recommended recipe (docs/quality.md says how it was chosen)
RECIPE = {
    "stage": "wm", "model_name_or_path": os.path.join(REPO, "examples", "models", "tiny-llama"),
    "finetuning_type": "lora", "lora_rank": 16,
    "lm_loss_weight": 0.0,  # the text around the vectors is fixed scaffolding: no LM target worth learning
    "unroll_steps": 2,  # half the loss on forecasts made from the model's own forecasts: rollouts drift less
    "per_device_train_batch_size": 16, "learning_rate": 1e-3, "lr_scheduler_type": "cosine", "warmup_steps": 0.05,
    # keep the checkpoint whose rollouts of 8 steps are best on a tenth of the training rows (the model before
    # training, the ridge forecast, is a candidate too): small datasets overfit, and a lower teacher-forced loss
    # can come with rollouts that drift
    "val_size": 0.1, "eval_strategy": "steps", "eval_steps": 50, "save_strategy": "steps", "save_steps": 50,
    "load_best_model_at_end": True, "save_total_limit": 2,
    "eval_rollout_steps": 8, "metric_for_best_model": "eval_rollout_mse",
}
STEPS = 600  # max_steps of the recipe (`--steps`)
# `--defaults`: what a new user writes, every other key left at wmfactory's default (the stage wm defaults of
# `hparams/parser.py`: the recipe's values but `lm_loss_weight` 0.1, 3 epochs or 600 steps where they are fewer, the
# validation split and the checkpoint choice where there are 50 training rows)
DEFAULTS = {"stage": "wm", "model_name_or_path": RECIPE["model_name_or_path"]}
RIDGE_K = (1, 2, 3)
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # per training transition, on normalised features


# ---------------------------------------------------------------------------------------------- dataset folders
def write_folder(data: Dataset, folder: str) -> None:
    """`<folder>/dataset_info.json` with splits `train`, `test` and `rollout_<c>` for each rollout origin c (the test
    rows cut after c + horizon states), and one .npy per vector under `<folder>/vectors/`."""
    shutil.rmtree(folder, ignore_errors=True)  # always the rows of this run
    os.makedirs(os.path.join(folder, "vectors"), exist_ok=True)

    def conversation(split: str, number: int, row: dict, length: int, context: int) -> dict:
        groups, files = [], {}
        for t in range(length):
            keys = [("s", row["s"][t])] + ([("a", row["a"][t])] if "a" in row and t < length - 1 else [])
            for stream, vector in keys:
                path = os.path.join("vectors", f"{split}_{number}_{stream}{t + 1}.npy")
                if not os.path.isfile(os.path.join(folder, path)):
                    np.save(os.path.join(folder, path), np.asarray(vector, np.float32))
                files[f"{stream}{t + 1}"] = [path]
                groups.append(f"<{stream}{t + 1}>")
        cut = _split_at(groups, context)
        return {"messages": [{"role": "user", "content": row["text"] + " " + "".join(groups[:cut])},
                             {"role": "assistant", "content": "".join(groups[cut:])}],
                "embeddings": files,
                **({"series": row["series"], "timestamps": row["timestamps"][:length]} if "series" in row else {})}

    splits = {
        "train": [conversation("train", i, r, len(r["s"]), data.context) for i, r in enumerate(data.train)],
        "test": [conversation("test", i, r, len(r["s"]), data.context) for i, r in enumerate(data.test)],
        **{f"rollout_{c}": [conversation("test", i, r, c + data.horizon, c) for i, r in enumerate(data.test)]
           for c in data.origins},
    }
    from wmfactory.data.registry import write_rows
    from wmfactory.data.registry import OPENAI_TAGS

    for split, rows in splits.items():
        write_rows(folder, split, rows, {"file_name": f"{split}.jsonl", "formatting": "sharegpt",
                                         "columns": {"messages": "messages", "embeddings": "embeddings"},
                                         "tags": OPENAI_TAGS})


def _split_at(groups: list[str], context: int) -> int:
    """Groups up to and including the `context`-th state and the condition after it."""
    seen = 0
    for i, group in enumerate(groups):
        seen += group.startswith("<s")
        if seen == context:
            return i + 1 + (i + 1 < len(groups) and groups[i + 1].startswith("<a"))
    return len(groups)


def context_groups(data: Dataset, given: int) -> int:
    """Placeholders before the first generated state: `given` states and the conditions after them."""
    return given * (2 if data.condition_dim else 1)


# ---------------------------------------------------------------------------------------------- the world model
def train_world_model(data: Dataset, folder: str, out: str, steps: Optional[int], overrides: dict,
                      recipe: Optional[dict] = None) -> dict:
    """Train with the recipe; -> {"train_seconds": the training loop's `train_runtime`, "best_step": the step of the
    checkpoint kept, "kept_start": whether the model before training (the ridge forecast) was kept instead,
    "ridge_choice": the history and penalty the frame's ridge chose}."""
    from wmfactory.train.tuner import run_exp

    config = {**(RECIPE if recipe is None else recipe), "dataset": "train", "dataset_dir": folder, "output_dir": out,
              "overwrite_output_dir": True, "report_to": "none", "disable_tqdm": True, "seed": 0,
              **({"max_steps": steps, "logging_steps": max(steps // 8, 1)} if steps else {}),
              **({"condition_streams": "a"} if data.condition_dim else {}), **overrides}
    trainer = run_exp(config)

    def read(name: str) -> dict:
        with open(os.path.join(out, name)) as f:
            return json.load(f)

    results = read("train_results.json")
    trained = int(trainer.state.global_step)
    best = read("trainer_state.json").get("best_global_step")
    return {"train_seconds": float(results["train_runtime"]), "steps": trained,
            "best_step": trained if best is None else int(best),
            "kept_start": bool(results.get("kept_start", 0)),
            "ridge_choice": read("config.json").get("ridge_choice", {}).get("s", {})}


def world_model_forecasts(data: Dataset, folder: str, out: str) -> tuple[dict, dict]:
    """Teacher-forced forecasts {(row, t): [d]} of every state after the first, and rollout forecasts
    {(row, c, h): [d]} for h = 1..horizon after c given states, for each origin c."""
    from wmfactory.commands.common import load_model_and_rows
    from wmfactory.hparams import get_predict_args
    from wmfactory.inference import generate_rows, row_batches, teacher_forced_rows

    def load(split):
        return load_model_and_rows(get_predict_args({"model_name_or_path": out, "dataset": split,
                                                     "dataset_dir": folder, "output_dir": os.path.join(out, "q")}))

    model, rows, _ = load("test")
    forced = {}
    for batch in row_batches(rows, 8):
        for features, groups in zip(batch, teacher_forced_rows(model, batch)):
            for group in groups:
                if group.stream == "s":
                    forced[(features["row_index"], int(group.key[1:]) - 1)] = group.predicted[0]
    rolled = {}
    for c in data.origins:
        _, rows, _ = load(f"rollout_{c}")
        for batch in row_batches(rows, 8):
            for features, groups in zip(batch, generate_rows(model, batch, context_groups(data, c))):
                for group in groups:
                    if group.stream == "s":
                        rolled[(features["row_index"], c, group.horizon)] = group.predicted[0]
    return forced, rolled


# ---------------------------------------------------------------------------------------------- baselines
class Normaliser:
    def __init__(self, rows: list[dict]):
        states = np.concatenate([r["s"] for r in rows]).astype(np.float64)
        self.mean, self.std = states.mean(0), states.std(0) + 1e-8
        steps = np.concatenate([np.diff(r["s"], axis=0) for r in rows]).astype(np.float64)
        self.step = steps.std(0) / self.std + 1e-8  # std of one step, in normalised units

    def __call__(self, x):
        return (np.asarray(x, np.float64) - self.mean) / self.std

    def back(self, z):
        return z * self.std + self.mean


def _ridge_design(z: np.ndarray, a, t: int, k: int) -> np.ndarray:
    """Features predicting state t: states t-k..t-1 (normalised) and the conditions applied after them, and 1."""
    parts = [z[t - k:t].reshape(-1)] + ([a[t - k:t].reshape(-1)] if a is not None else []) + [np.ones(1)]
    return np.concatenate(parts)


class Ridge:
    """Ridge regression of the next state on the last k states (and conditions), normalised; the penalty chosen
    on a held-out fifth of the training rows, then refitted on all of them."""

    def __init__(self, rows: list[dict], k: int, norm: Normaliser):
        self.k, self.norm = k, norm
        order = np.random.default_rng(k).permutation(len(rows))
        held = set(order[: max(1, len(rows) // 5)].tolist())
        fit = [r for i, r in enumerate(rows) if i not in held]
        check = [r for i, r in enumerate(rows) if i in held]
        errors = {p: self._error(self._solve(*self._pairs(fit), p), *self._pairs(check)) for p in PENALTIES}
        self.penalty = min(errors, key=errors.get)
        self.weight = self._solve(*self._pairs(rows), self.penalty)

    def _pairs(self, rows):
        x, y = [], []
        for r in rows:
            z = self.norm(r["s"])
            for t in range(self.k, len(z)):
                x.append(_ridge_design(z, r.get("a"), t, self.k))
                y.append(z[t] - z[t - 1])
        return np.asarray(x), np.asarray(y)

    @staticmethod
    def _solve(x, y, penalty):
        gram = x.T @ x
        reg = penalty * len(x) * np.eye(len(gram))
        reg[-1, -1] = 0  # the intercept is not penalised
        return np.linalg.solve(gram + reg, x.T @ y)

    @staticmethod
    def _error(weight, x, y):
        return float(np.mean((x @ weight - y) ** 2))

    def next(self, z: np.ndarray, a, t: int) -> np.ndarray:
        """Normalised forecast of state t from z[t-k..t-1]."""
        return z[t - 1] + _ridge_design(z, a, t, self.k) @ self.weight


def gru_forecasts(data: Dataset, norm: Normaliser, seconds: float, seed: int = 0) -> tuple[dict, dict, int]:
    """A GRU trained for `seconds` on the training rows; -> (teacher-forced, rollout) forecasts like the world
    model's, and the number of optimiser steps it took."""
    import torch

    torch.manual_seed(seed)
    width = data.train[0]["s"].shape[1] + (data.condition_dim or 0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(width, 128, batch_first=True)
            self.out = torch.nn.Linear(128, data.train[0]["s"].shape[1])

        def forward(self, x, state=None):
            hidden, state = self.gru(x, state)
            return self.out(hidden), state

    def inputs(row, length=None):
        z = norm(row["s"][:length])
        a = row.get("a")
        if a is not None:
            a = a[: len(z)]
            if len(a) < len(z):
                a = np.concatenate([a, np.zeros((len(z) - len(a), a.shape[1]))])
            z = np.concatenate([z, a], axis=1)
        return torch.tensor(z, dtype=torch.float32)

    step = torch.tensor(norm.step, dtype=torch.float32)
    net, rng = Net(), np.random.default_rng(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = [data.train[i] for i in rng.choice(len(data.train), min(16, len(data.train)), replace=False)]
        x = torch.nn.utils.rnn.pad_sequence([inputs(r) for r in batch], batch_first=True)
        lengths = torch.tensor([len(r["s"]) for r in batch])
        mask = (torch.arange(x.shape[1] - 1)[None] < (lengths[:, None] - 1)).float()
        states = x[:, :, : len(step)]
        target = (states[:, 1:] - states[:, :-1]) / step
        predicted, _ = net(x[:, :-1])
        loss = (((predicted - target) ** 2).mean(-1) * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        steps += 1
    forced, rolled = {}, {}
    with torch.no_grad():
        for number, row in enumerate(data.test):
            x = inputs(row)
            predicted, _ = net(x[None, :-1])
            z = x[:-1, : len(step)] + predicted[0] * step  # forecasts of states 1..T-1
            for t in range(1, len(x)):
                forced[(number, t)] = norm.back(z[t - 1].numpy())
            for c in data.origins:
                x = inputs(row, c + data.horizon)
                out, state = net(x[None, :c])
                current = x[c - 1, : len(step)] + out[0, -1] * step
                for h in range(1, data.horizon + 1):
                    rolled[(number, c, h)] = norm.back(current.numpy())
                    if h == data.horizon:
                        break
                    feed = torch.cat([current, x[c + h - 1, len(step):]])
                    out, state = net(feed[None, None], state)
                    current = current + out[0, -1] * step
    return forced, rolled, steps


def baseline_forecasts(data: Dataset, norm: Normaliser, ridges: dict) -> tuple[dict, dict]:
    """{name: {(row, t): forecast}} teacher-forced, and {name: {(row, h): forecast}} rolled out."""
    mean = norm.mean
    forced, rolled = {}, {}
    names = ["persistence", "linear", "mean"] + [f"ridge k={k}" for k in ridges]
    for name in names:
        forced[name], rolled[name] = {}, {}
    for number, row in enumerate(data.test):
        s, a = row["s"].astype(np.float64), row.get("a")
        z = norm(s)
        for t in range(1, len(s)):
            forced["persistence"][(number, t)] = s[t - 1]
            forced["mean"][(number, t)] = mean
            if t >= 2:
                forced["linear"][(number, t)] = 2 * s[t - 1] - s[t - 2]
            for k, ridge in ridges.items():
                if t >= k:
                    forced[f"ridge k={k}"][(number, t)] = norm.back(ridge.next(z, a, t))
        for c in data.origins:
            paths = {k: z[:c].copy() for k in ridges}
            for h in range(1, data.horizon + 1):
                rolled["persistence"][(number, c, h)] = s[c - 1]
                rolled["mean"][(number, c, h)] = mean
                rolled["linear"][(number, c, h)] = s[c - 1] + h * (s[c - 1] - s[c - 2])
                for k, ridge in ridges.items():
                    nxt = ridge.next(paths[k], a, len(paths[k]))
                    paths[k] = np.concatenate([paths[k], nxt[None]])
                    rolled[f"ridge k={k}"][(number, c, h)] = norm.back(nxt)
    return forced, rolled


# ---------------------------------------------------------------------------------------------- scoring
def score(data: Dataset, forecasts: dict[str, dict]) -> dict:
    """MSE of each forecaster, teacher-forced over the states with at least 3 before them, and per horizon over
    every rollout origin (`origin_horizons`: per horizon at each origin, with several)."""
    forced_keys = [(n, t) for n, row in enumerate(data.test) for t in range(max(RIDGE_K), len(row["s"]))]
    result = {"teacher_forced": {}, "horizons": {str(h): {} for h in range(1, data.horizon + 1)},
              "vectors": {"teacher_forced": len(forced_keys), "rollout_rows": len(data.test),
                          "rollout_origins": list(data.origins)}}
    if len(data.origins) > 1:
        result["origin_horizons"] = {str(c): {str(h): {} for h in range(1, data.horizon + 1)} for c in data.origins}
    for name, (forced, rolled) in forecasts.items():
        target = np.stack([data.test[n]["s"][t] for n, t in forced_keys]).astype(np.float64)
        predicted = np.stack([forced[key] for key in forced_keys]).astype(np.float64)
        result["teacher_forced"][name] = float(np.mean((predicted - target) ** 2))
        for h in range(1, data.horizon + 1):
            errors = {}
            for c in data.origins:
                target = np.stack([row["s"][c - 1 + h] for row in data.test]).astype(np.float64)
                predicted = np.stack([rolled[(n, c, h)] for n in range(len(data.test))]).astype(np.float64)
                errors[c] = np.mean((predicted - target) ** 2, axis=1)
                if len(data.origins) > 1:
                    result["origin_horizons"][str(c)][str(h)][name] = float(errors[c].mean())
            result["horizons"][str(h)][name] = float(np.concatenate(list(errors.values())).mean())
    return result


LEVELS = np.arange(1, 10) / 10  # the quantile levels of WQL
ETS_FITS = 20_000  # AutoETS is fitted per test row, origin and dimension: at most this many fits per dataset


def forecasting_scores(data: Dataset, rolled: dict[str, dict]) -> dict:
    """MASE and WQL of each forecaster's rollouts (every test row, origin and horizon 1..`horizon`), each also relative
    to the seasonal naive forecast's, as GIFT-Eval gives them. MASE: the absolute error over the row's in-sample
    seasonal naive error (`eval.metrics.seasonal_scale`, per dimension, season `data.season`), averaged; WQL: the
    pinball loss over `LEVELS`, x 2 / (levels x the sum of |target|). Every forecaster here but AutoETS gives a point,
    whose quantiles are that point (its WQL is then the sum of |error| over the sum of |target|); AutoETS
    (statsforecast, `eval.statistical`, fitted on each dimension of each test row's history up to the origin) gives a
    Gaussian from its own 80% interval. AutoETS is scored where every origin has `MIN_HISTORY` states and the fits
    number at most `ETS_FITS`."""
    from statistics import NormalDist

    from wmfactory.eval.metrics import seasonal_scale
    from wmfactory.eval.statistical import MIN_HISTORY, statistical_forecasts

    m, horizon = data.season, data.horizon
    dim = data.test[0]["s"].shape[1]
    fit_ets = (min(data.origins) >= MIN_HISTORY and dim * len(data.test) * len(data.origins) <= ETS_FITS)
    points = {name: [] for name in rolled}
    points["seasonal naive"] = []
    ets_mean, ets_std, targets, scales = [], [], [], []
    for n, row in enumerate(data.test):
        s = row["s"].astype(np.float64)
        for c in data.origins:
            scale = seasonal_scale(s, c - 1, m)
            fitted = statistical_forecasts(s[:c], horizon, m, f" of test row {n} of {data.name}",
                                           names=("auto_ets",))["auto_ets"] if fit_ets else None
            for h in range(1, horizon + 1):
                targets.append(s[c - 1 + h])
                scales.append(scale)
                for name in rolled:
                    points[name].append(rolled[name][(n, c, h)])
                points["seasonal naive"].append(s[c - m + (h - 1) % m])
                if fitted is not None:
                    ets_mean.append(fitted[0][h - 1])
                    ets_std.append(fitted[1][h - 1])
    target, scale = np.array(targets), np.array(scales)
    scaled = np.isfinite(scale) & (scale > 0)
    weight = np.abs(target).sum()

    def scores(quantiles: np.ndarray) -> dict:  # quantiles [levels, n, d]; the median is the point
        error = np.abs(quantiles[len(LEVELS) // 2] - target)
        residual = target[None] - quantiles
        pinball = np.maximum(LEVELS[:, None, None] * residual, (LEVELS[:, None, None] - 1) * residual).sum()
        return {"mase": float(np.mean(error[scaled] / scale[scaled])),
                "wql": float(2 * pinball / (len(LEVELS) * weight))}

    result = {name: scores(np.broadcast_to(np.array(p, np.float64), (len(LEVELS), *target.shape)))
              for name, p in points.items()}
    if ets_mean:
        z = np.array([NormalDist().inv_cdf(q) for q in LEVELS])[:, None, None]
        result["AutoETS"] = scores(np.array(ets_mean)[None] + z * np.array(ets_std)[None])
    reference = result["seasonal naive"]
    for name in result:
        result[name]["relative"] = {score: result[name][score] / reference[score] for score in ("mase", "wql")}
    return {"season": m, "scores": result, "mase_values": int(scaled.sum()), "values": int(target.size)}


def run_dataset(name: str, out: str, steps: Optional[int], overrides: dict, recipe: Optional[dict] = None) -> dict:
    data = BUILDERS[name]()
    folder, model_dir = os.path.join(out, name, "data"), os.path.join(out, name, "model")
    write_folder(data, folder)
    run = train_world_model(data, folder, model_dir, steps, overrides, recipe)
    seconds = run["train_seconds"]
    model_forced, model_rolled = world_model_forecasts(data, folder, model_dir)
    norm = Normaliser(data.train)
    ridges = {k: Ridge(data.train, k, norm) for k in RIDGE_K}
    forced, rolled = baseline_forecasts(data, norm, ridges)
    gru_forced, gru_rolled, gru_steps = gru_forecasts(data, norm, seconds)
    forecasts = {"world model": (model_forced, model_rolled), "GRU": (gru_forced, gru_rolled),
                 **{n: (forced[n], rolled[n]) for n in forced}}
    result = score(data, forecasts)
    result["forecasting"] = forecasting_scores(data, {name: rolled for name, (_, rolled) in forecasts.items()})
    result.update({"dataset": name, "source": data.source, "description": data.description,
                   "train_rows": len(data.train), "test_rows": len(data.test), "context": data.context,
                   "horizon": data.horizon, **run, "gru_steps": gru_steps,
                   "ridge_penalties": {k: r.penalty for k, r in ridges.items()}})
    return result


def _states(count: int) -> str:
    return "state" if count == 1 else f"{count} states"


def _origins(r: dict) -> str:
    origins = r.get("vectors", {}).get("rollout_origins") or [r["context"]]
    if len(origins) == 1:
        return str(origins[0])
    return f"each of {', '.join(map(str, origins))} (rolling origins, errors averaged over them)"


def tables(results: list[dict]) -> str:
    lines = []
    for r in results:
        h = str(r["horizon"])
        names = list(r["teacher_forced"])
        lines += [f"### {r['dataset']}: {r['description']}", "",
                  f"{r['source']}; {r['train_rows']} training and {r['test_rows']} test rows; rollout from "
                  f"{_origins(r)} given states; world model {r['steps']} steps in {r['train_seconds']:.0f} s ("
                  + ("no checkpoint beat the start, which was kept" if r.get("kept_start") else
                     f"checkpoint of step {r.get('best_step', r['steps'])} kept")
                  + (f"; its frame: ridge on the last {_states(k)}" if (k := _frame_history(r)) is not None else "")
                  + f"), GRU {r['gru_steps']} steps in the same time.", "",
                  "| forecaster | teacher-forced | h=1 | h=" + h + " | teacher-forced / persistence | h=" + h
                  + " / persistence |", "|---|---|---|---|---|---|"]
        for name in names:
            tf, h1, hl = r["teacher_forced"][name], r["horizons"]["1"][name], r["horizons"][h][name]
            lines.append(f"| {name} | {tf:.3g} | {h1:.3g} | {hl:.3g} | "
                         f"{tf / r['teacher_forced']['persistence']:.3g} | {hl / r['horizons'][h]['persistence']:.3g} |")
        lines.append("")
    names = list(results[0]["teacher_forced"])
    lines += ["### Geometric mean across datasets of the MSE relative to persistence", "",
              "| forecaster | teacher-forced | longest horizon |", "|---|---|---|"]
    for name in names:
        tf = np.exp(np.mean([np.log(r["teacher_forced"][name] / r["teacher_forced"]["persistence"]) for r in results]))
        hl = np.exp(np.mean([np.log(r["horizons"][str(r["horizon"])][name]
                                    / r["horizons"][str(r["horizon"])]["persistence"]) for r in results]))
        lines.append(f"| {name} | {tf:.3g} | {hl:.3g} |")
    lines += ["", verdicts(results)]
    lines += forecasting_tables(results)
    return "\n".join(lines)


def _frame_history(r: dict) -> Optional[int]:
    """The number of states the world model's frame reads (`ridge_choice`), None when the run did not say."""
    choice = r.get("ridge_choice") or {}
    return choice.get("frame_history", choice.get("history"))


def _frame_ridge(r: dict) -> Optional[str]:
    """The suite's ridge with the history the world model's frame chose, by name."""
    k = _frame_history(r)
    return f"ridge k={k}" if k is not None and f"ridge k={k}" in r["forecasting"]["scores"] else None


def forecasting_tables(results: list[dict]) -> list[str]:
    """MASE and WQL of the rollouts relative to seasonal naive, per dataset, and their geometric means (over every
    dataset, and over those where AutoETS is scored)."""
    results = [r for r in results if "forecasting" in r]
    if not results:
        return []
    names = ["world model", "ridge (the frame's k)", "GRU", "persistence", "AutoETS", "seasonal naive"]

    def relative(r: dict, name: str, score: str) -> Optional[float]:
        scores = r["forecasting"]["scores"]
        name = _frame_ridge(r) if name == "ridge (the frame's k)" else name
        return scores[name]["relative"][score] if name in scores else None

    lines = ["", "### MASE and WQL of the rollouts, relative to seasonal naive", "",
             "Every rollout vector of every origin and horizon; below 1 beats seasonal naive (of season m). AutoETS "
             "where every origin has 7 states or more and the fits are few enough (`forecasting_scores`).", ""]
    for score in ("mase", "wql"):
        lines += [f"| {score.upper()} / seasonal naive | m | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for r in results:
            cells = [relative(r, name, score) for name in names]
            lines.append(f"| {r['dataset']} | {r['forecasting']['season']} | "
                         + " | ".join("" if c is None else f"{c:.3g}" for c in cells) + " |")
        for title, chosen in (("geometric mean", results),
                              ("geometric mean where AutoETS is scored",
                               [r for r in results if "AutoETS" in r["forecasting"]["scores"]])):
            if not chosen:
                continue
            cells = []
            for name in names:
                values = [relative(r, name, score) for r in chosen]
                cells.append("" if None in values else f"{np.exp(np.mean(np.log(values))):.3g}")
            lines.append(f"| {title} ({len(chosen)}) | | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def verdicts(results: list[dict]) -> str:
    """Where the world model is at most the best ridge, teacher-forced and at the longest horizon."""
    out = []
    for r in results:
        h = str(r["horizon"])
        for mode, scores in (("teacher-forced", r["teacher_forced"]), (f"h={h}", r["horizons"][h])):
            best = min((n for n in scores if n.startswith("ridge")), key=scores.get)
            ratio = scores["world model"] / scores[best]
            out.append(f"- {r['dataset']} {mode}: world model / best ridge ({best}) = {ratio:.3f}"
                       f"{'' if ratio <= 1 else '  (WORSE)'}")
    return "\n".join(out)


def combined_results(paths: list[str]) -> tuple[dict, list[dict]]:
    """The recipe and the results of several runs of the suite, the datasets in the suite's order; the runs must
    share their recipe and not repeat a dataset."""
    recipe, by_name = None, {}
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        if recipe is not None and run["recipe"] != recipe:
            raise SystemExit(f"{path}: its recipe differs from {paths[0]}'s; only runs of one recipe combine")
        recipe = run["recipe"]
        for result in run["results"]:
            if result["dataset"] in by_name:
                raise SystemExit(f"{path}: dataset {result['dataset']} is in two of the runs")
            by_name[result["dataset"]] = result
    return recipe, [by_name[name] for name in BUILDERS if name in by_name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--steps", type=int, default=STEPS, help="max_steps (the best checkpoint is kept)")
    parser.add_argument("--out", default=os.path.join(REPO, "saves", "quality"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe keys to change, e.g. predict_residual=true embedding_norm=none")
    parser.add_argument("--defaults", action="store_true",
                        help="train with wmfactory's defaults (no recipe keys, no --steps) instead of the recipe")
    parser.add_argument("--from_results", nargs="*", default=[], metavar="RESULTS_JSON",
                        help="train nothing: write the tables of the datasets in these results.json files (runs of "
                             "the same recipe on different --datasets) together")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    os.makedirs(args.out, exist_ok=True)
    if args.from_results:
        recipe, results = combined_results(args.from_results)
    else:
        base, steps = (DEFAULTS, None) if args.defaults else (RECIPE, args.steps)
        recipe = {**base, **overrides, **({"max_steps": steps} if steps else {})}
        results = [run_dataset(name, args.out, steps, overrides, base) for name in args.datasets]
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"recipe": recipe, "results": results}, f, indent=2)
    text = tables(results)
    with open(os.path.join(args.out, "quality.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
