"""Past-only covariates: rows whose forecast part is written as a rollout reads it (no `p` after the history, what
`from_dataframe` writes), against rows that show `p` at every step (the layout before), and against no covariate.

    python benchmarks/past_covariates.py [--steps 300] [--series 32]

Data: `--series` series of 120 steps, split by time at step 96. A past-only covariate p (AR(1), p_t = 0.9 p_{t-1} +
e_t) drives the target with a lag of one step: y_{t+1} = 0.7 y_t + 0.6 p_t + 0.05 n_t. Training rows come from the
first 96 steps (`from_dataframe`, context 16, prediction 8, stride 1); each model then forecasts steps 96-103 of
every series from its history (`predict_df`, context 16), and the score is the mean absolute error per horizon.
Three models, the same tiny LLM, LoRA rank 16, steps and seed:
- forecast part without p (today's `from_dataframe`);
- p at every step (the rows rewritten to show the forecast part's p too, as training rows did before);
- no covariate (the targets alone).
Prints JSON."""

import argparse
import json
import os
import platform
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")
LENGTH, SPLIT, CONTEXT, HORIZON = 120, 96, 16, 8


def make_table(series: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    parts = []
    for number in range(series):
        p, y = np.zeros(LENGTH), np.zeros(LENGTH)
        p[0], y[0] = rng.normal(), rng.normal()
        for t in range(1, LENGTH):
            p[t] = 0.9 * p[t - 1] + 0.45 * rng.normal()
            y[t] = 0.7 * y[t - 1] + 0.6 * p[t - 1] + 0.05 * rng.normal()
        parts.append(pd.DataFrame({"item_id": f"s{number}", "timestamp": pd.date_range("2020-01-01", periods=LENGTH,
                                                                                        freq="D"), "y": y, "p": p}))
    return pd.concat(parts, ignore_index=True)


def show_past_everywhere(rows_path: str) -> None:
    """Rewrite the rows of `from_dataframe` so that every step shows its past-only covariate `<y><p>`."""
    with open(rows_path) as f:
        rows = [json.loads(line) for line in f]
    for row in rows:
        steps = len(row["embeddings"]["y"])
        row["messages"][0]["content"] = "<y><p>" * steps
        # each step's files sit side by side: <series folder>/y<t>.safetensors and p<t>.safetensors
        row["embeddings"]["p"] = [folder + "/p" + name[1:] for folder, name in
                                  (path.rsplit("/", 1) for path in row["embeddings"]["y"])]
    with open(rows_path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def train(data_dir: str, out: str, steps: int, past: bool) -> None:
    from wmfactory.train.tuner import run_exp

    run_exp({"stage": "wm", "model_name_or_path": TINY, "dataset": "table", "dataset_dir": data_dir,
             "output_dir": out, "overwrite_output_dir": True, "finetuning_type": "lora", "lora_rank": 16,
             "lm_loss_weight": 0.0, "learning_rate": 1e-3, "per_device_train_batch_size": 16, "max_steps": steps,
             "save_strategy": "no", "report_to": "none", "disable_tqdm": True, "seed": 0,
             **({"past_streams": "p"} if past else {})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--series", type=int, default=32)
    args = parser.parse_args()
    from wmfactory import WorldModel
    from wmfactory.data import from_dataframe

    df = make_table(args.series)
    history = df[df.timestamp < df.timestamp.iloc[SPLIT]]
    truth = df[(df.timestamp >= df.timestamp.iloc[SPLIT]) & (df.timestamp < df.timestamp.iloc[SPLIT + HORIZON])]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("forecast part without p", "p at every step", "no covariate"):
            data_dir, out = os.path.join(tmp, variant.replace(" ", "_"), "data"), os.path.join(tmp, "model")
            past = ["p"] if variant != "no covariate" else []
            path = from_dataframe(history, "item_id", "timestamp", ["y"], past_covariates=past,
                                  context_length=CONTEXT, prediction_length=HORIZON, out_dir=data_dir, name="table",
                                  stride=1)
            if variant == "p at every step":
                show_past_everywhere(path)
            train(data_dir, out, args.steps, bool(past))
            model = WorldModel.from_pretrained(out)
            forecast = model.predict_df(history, target="y", past_covariates=past or None, quantile_levels=[],
                                        prediction_length=HORIZON, context_length=CONTEXT)
            merged = forecast.merge(truth, on=["item_id", "timestamp"])
            error = np.abs(merged["mean"].to_numpy() - merged["y"].to_numpy()).reshape(args.series, HORIZON)
            results[variant] = {"mae_per_horizon": [round(float(v), 4) for v in error.mean(0)],
                                "mae": round(float(error.mean()), 4)}
    last = history.groupby("item_id").y.last().reindex(truth.item_id).to_numpy()
    persistence = np.abs(last - truth.y.to_numpy()).reshape(args.series, HORIZON)
    results["persistence"] = {"mae_per_horizon": [round(float(v), 4) for v in persistence.mean(0)],
                              "mae": round(float(persistence.mean()), 4)}
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": args.steps,
                      "series": args.series, "results": results}, indent=2))


if __name__ == "__main__":
    main()
