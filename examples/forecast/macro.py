"""Forecasting from a table: US quarterly macro data (statsmodels' `macrodata`, shipped inside the package, 1959Q1 to
2009Q3) -> `from_dataframe` -> train the tiny model -> `predict_df` with quantiles -> a fan chart.

    pip install -r examples/forecast/requirements.txt
    python examples/forecast/macro.py                      # about a minute on 2 CPU cores

The targets are the unemployment rate and inflation; the 3-month T-bill rate is a known covariate (a policy path
given as a scenario: the forecast is conditional on it). The last `--holdout` quarters are held out: the model is
trained on windows of the quarters before them and forecasts them from the 24 quarters before, given the T-bill
rate of the held-out quarters. Prints the forecast table and its scores beside seasonal naive (the value four
quarters back) and persistence, and draws `--image`."""

import argparse
import os

import numpy as np

TINY_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "tiny-llama")
TARGETS = ["unemp", "infl"]
KNOWN = ["tbilrate"]
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def macro_table():
    """The long table: one series `us`, a time stamp per quarter (its first day), the targets and the covariate."""
    try:
        import statsmodels.api as sm
    except ImportError:
        raise SystemExit("This example needs statsmodels: pip install -r examples/forecast/requirements.txt") from None
    import pandas as pd

    data = sm.datasets.macrodata.load_pandas().data
    stamps = pd.PeriodIndex.from_fields(year=data.year.astype(int), quarter=data.quarter.astype(int),
                                        freq="Q").to_timestamp()
    return pd.DataFrame({"item_id": "us", "timestamp": stamps, **{c: data[c].astype(float) for c in TARGETS + KNOWN}})


def train(data_dir: str, output_dir: str, steps: int, seed: int, head: str) -> None:
    from wmfactory.train.tuner import run_exp

    run_exp({
        "stage": "wm", "model_name_or_path": TINY_MODEL, "dataset": "macro",
        "dataset_dir": data_dir, "condition_streams": "x", "output_dir": output_dir, "overwrite_output_dir": True,
        "finetuning_type": "lora", "lora_rank": 16, "lm_loss_weight": 0.0, "prediction_head_type": head,
        "per_device_train_batch_size": 16, "learning_rate": 1e-3, "lr_scheduler_type": "cosine",
        "warmup_steps": 0.05, "max_steps": steps, "logging_steps": 50, "save_strategy": "no", "report_to": "none",
        "disable_tqdm": True, "seed": seed,
    })


def scores(forecast, actual, history) -> dict:
    """Mean absolute error per target of the model's mean, seasonal naive (m = 4) and persistence, and how many true
    values fall inside the model's 10%-90% band."""
    out = {}
    for name in TARGETS:
        mine = forecast[forecast.target_name == name]
        truth = actual[name].to_numpy()
        last = history[name].to_numpy()
        seasonal = np.array([last[len(last) - 4 + (h % 4)] for h in range(len(truth))])
        out[name] = {"model": float(np.abs(mine["mean"].to_numpy() - truth).mean()),
                     "seasonal_naive": float(np.abs(seasonal - truth).mean()),
                     "persistence": float(np.abs(last[-1] - truth).mean()),
                     "inside_10_90": float(((mine["0.1"] <= truth) & (truth <= mine["0.9"])).mean())}
    return out


def fan_chart(history, actual, forecast, path: str, shown: int = 40) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(TARGETS), 1, figsize=(8, 3.2 * len(TARGETS)), sharex=True)
    titles = {"unemp": "unemployment rate (%)", "infl": "inflation (% a year)"}
    for axis, name in zip(axes, TARGETS):
        past = history.iloc[-shown:]
        mine = forecast[forecast.target_name == name]
        axis.plot(past.timestamp, past[name], color="black", lw=1.2, label="history")
        axis.plot(actual.timestamp, actual[name], color="black", lw=1.2, ls="--", label="held out (true)")
        axis.fill_between(mine.timestamp, mine["0.1"], mine["0.9"], color="tab:blue", alpha=0.2, label="10%-90%")
        axis.fill_between(mine.timestamp, mine["0.3"], mine["0.7"], color="tab:blue", alpha=0.35, label="30%-70%")
        axis.plot(mine.timestamp, mine["mean"], color="tab:blue", lw=1.5, label="mean")
        axis.set_title(titles.get(name, name), fontsize=10)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    figure.suptitle("Forecast of the last quarters of macrodata, given the T-bill rate", fontsize=11)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="saves/forecast_macro")
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--holdout", type=int, default=8, help="quarters held out and forecast")
    parser.add_argument("--samples", type=int, default=200, help="sampled trajectories for the quantiles")
    parser.add_argument("--image", default="docs/images/forecast_fan_chart.png")
    parser.add_argument("--head", default="mixture", choices=["mixture", "quantile", "diffusion"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from wmfactory import WorldModel
    from wmfactory.data import from_dataframe

    table = macro_table()
    history, actual = table.iloc[:-args.holdout], table.iloc[-args.holdout:]
    data_dir = os.path.join(args.out, "data")
    from_dataframe(history, "item_id", "timestamp", TARGETS, known_covariates=KNOWN, context_length=24,
                   prediction_length=args.holdout, out_dir=data_dir, name="macro", stride=1)
    train(data_dir, os.path.join(args.out, "model"), args.steps, args.seed, args.head)

    model = WorldModel.from_pretrained(os.path.join(args.out, "model"))
    forecast = model.predict_df(history, actual[["item_id", "timestamp"] + KNOWN], target=TARGETS,
                                quantile_levels=LEVELS, num_samples=args.samples, seed=args.seed, context_length=24)
    forecast.to_csv(os.path.join(args.out, "forecast.csv"), index=False)
    print(forecast[["timestamp", "target_name", "mean", "0.1", "0.5", "0.9"]].to_string(index=False))
    for name, result in scores(forecast, actual, history).items():
        print(f"{name}: MAE model {result['model']:.3f}, seasonal naive {result['seasonal_naive']:.3f}, "
              f"persistence {result['persistence']:.3f}; {result['inside_10_90']:.0%} of the true values inside "
              "the 10%-90% band")
    fan_chart(history, actual, forecast, args.image)
    print(f"fan chart: {args.image}")


if __name__ == "__main__":
    main()
