"""Missing values: a model trained with `missing_values: mask` on records with gaps, against the same model trained on
the complete records and against filling the gaps by persistence.

    python benchmarks/missing_values.py [--steps 400] [--missing 0.2] [--loss l1] [--seed 0] [--seeds 1] [--refills 0]
        [--work DIR]

Data: the coupled pendulums of examples/dynamics (256 training and 32 test trajectories of 8 states of 4 numbers).
A share `--missing` of the entries (each number of each state, independently) is removed at random from the
training and the test trajectories. Three models, each with the same tiny LLM, LoRA rank 16, steps and seed:
- complete: trained on the complete records, given complete test histories (the reference);
- masked: trained on the records with gaps under `missing_values: mask`, given test histories with gaps (whose gaps
  it fills with what it finds most likely, `missing_fill_steps`; also scored with the frame's linear fill alone,
  `masked_linear_fill`);
- persistence-filled: trained on the records with each gap filled by the last observed value of its number (the
  first state's gaps by the training mean), given test histories filled the same way.
`--loss` is every model's `world_model_loss_type` (default `l2`). Each rolls out the last 4 states of every test
trajectory from its first 4 (`rollout(context_groups=4)`); the score is the MSE against the true states on the
entries that are observed in the test records with gaps (the same entries for the three models), per horizon and
over the 4. Persistence (the last observed value of each number) is
scored on the same entries. `--work DIR` keeps the datasets and the models there (default: a temporary folder).
`--refills N` adds a fourth model, `masked_refilled`: the masked one trained with `missing_refills: N` (the model
fills the training rows' gaps N times during the run and goes on training on them filled), given test histories with
gaps. `--seeds N` trains the models with N seeds from `--seed` on the same data (runs vary much from one seed to
the next) and adds each forecaster's geometric mean over them. Prints JSON."""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")
CONTEXT, STEPS = 4, 8


def run(command: list[str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-m", "wmfactory.cli", *command], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])


def load_split(data_dir: str, split: str) -> tuple[list[dict], np.ndarray]:
    """The rows of a split and their states `[rows, STEPS, 4]`."""
    with open(os.path.join(data_dir, f"oscillator_{split}.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    states = np.stack([[np.load(os.path.join(data_dir, row["embeddings"][f"m{t + 1}"][0])) for t in range(STEPS)]
                       for row in rows])
    return rows, states


def write_variant(source: str, out: str, states: dict[str, np.ndarray]) -> None:
    """A copy of the dataset at `source` whose vectors are `states[split]` `[rows, STEPS, 4]` (NaN kept)."""
    os.makedirs(os.path.join(out, "states"), exist_ok=True)
    shutil.copy(os.path.join(source, "dataset_info.json"), out)
    for split, values in states.items():
        shutil.copy(os.path.join(source, f"oscillator_{split}.jsonl"), out)
        for row, trajectory in enumerate(values):
            for t, state in enumerate(trajectory):
                np.save(os.path.join(out, "states", f"{split}_{row}_{t}.npy"), state.astype(np.float32))


def persistence_filled(states: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    filled = states.copy()
    for row in filled:
        previous = fallback
        for t in range(len(row)):
            row[t] = np.where(np.isnan(row[t]), previous, row[t])
            previous = row[t]
    return filled


def train(data_dir: str, out: str, steps: int, seed: int, loss: str, extra: list[str]) -> None:
    run(["train", "--stage", "wm", "--model_name", TINY, "--dataset", "oscillator_train", "--dataset_dir", data_dir,
         "--output_dir", out, "--overwrite_output_dir", "--finetuning_type", "lora", "--lora_rank", "16",
         "--lm_loss_weight", "0", "--per_device_train_batch_size", "16", "--learning_rate", "3e-3",
         "--max_steps", str(steps), "--lr_scheduler_type", "cosine", "--warmup_steps", "0.05",
         "--save_strategy", "no", "--logging_steps", str(steps), "--report_to", "none", "--seed", str(seed),
         "--world_model_loss_type", loss, *extra])


def timed(scored: dict, started: float) -> dict:
    """`scored` with the seconds since `started` (loading the model and rolling out every test row, one by one)."""
    return {**scored, "rollout_seconds": round(time.perf_counter() - started, 1)}


def rollouts(model_dir: str, data_dir: str, rows: list[dict], **config) -> np.ndarray:
    """`[rows, STEPS - CONTEXT, 4]`: each test row continued from its first CONTEXT states (`config`: keys of the
    model's configuration set for it, such as `missing_fill_steps`)."""
    from wmfactory import WorldModel

    model = WorldModel.from_pretrained(model_dir)
    for key, value in config.items():
        setattr(model.config, key, value)
    return np.stack([np.asarray(model.rollout(row, STEPS - CONTEXT, dataset_dir=data_dir, context_groups=CONTEXT))
                     for row in rows])


def scores(forecast: np.ndarray, truth: np.ndarray, observed: np.ndarray) -> dict:
    """MSE per horizon and over all, on the observed entries only."""
    squared = (forecast - truth) ** 2
    per_horizon = {str(h + 1): float(squared[:, h][observed[:, h]].mean()) for h in range(forecast.shape[1])}
    return {"mse": float(squared[observed].mean()), "mse_by_horizon": per_horizon}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--missing", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="train with seeds seed .. seed + seeds - 1")
    parser.add_argument("--loss", default="l2", choices=["l2", "l1", "smooth_l1"])
    parser.add_argument("--refills", type=int, default=0,
                        help="also train the masked model with `missing_refills` N (`masked_refilled`)")
    parser.add_argument("--work", default=None, help="keep the datasets and models in this folder")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be 1 or more, got {args.seeds}")
    rng = np.random.default_rng(1234)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "steps": args.steps,
              "missing": args.missing, "loss": args.loss}
    with tempfile.TemporaryDirectory() as scratch:
        work = scratch if args.work is None else os.path.abspath(args.work)
        complete = os.path.join(work, "complete")
        subprocess.run([sys.executable, os.path.join(REPO, "examples", "dynamics", "make_oscillator_data.py"),
                        "--out", complete], check=True, capture_output=True)
        train_rows, train_states = load_split(complete, "train")
        test_rows, test_states = load_split(complete, "test")
        gappy = {}
        for split, values in (("train", train_states), ("test", test_states)):
            values = values.copy()
            values[rng.random(values.shape) < args.missing] = np.nan
            gappy[split] = values
        mean = np.nanmean(gappy["train"].reshape(-1, 4), axis=0)
        filled = {split: persistence_filled(values, mean) for split, values in gappy.items()}
        write_variant(complete, os.path.join(work, "gappy"), gappy)
        write_variant(complete, os.path.join(work, "filled"), filled)
        result["missing_share_measured"] = float(np.isnan(gappy["train"]).mean())

        truth = test_states[:, CONTEXT:]
        observed = ~np.isnan(gappy["test"][:, CONTEXT:])
        last = filled["test"][:, CONTEXT - 1: CONTEXT]  # the last observed value of each number
        persistence = scores(np.repeat(last, STEPS - CONTEXT, axis=1), truth, observed)
        seeds = list(range(args.seed, args.seed + args.seeds))
        runs = [one_seed(work, seed, args, test_rows, truth, observed, persistence) for seed in seeds]
    if len(runs) == 1:
        result.update(runs[0])
    else:  # each seed's scores, and each forecaster's geometric mean over the seeds
        result["seeds"] = {str(seed): run for seed, run in zip(seeds, runs)}
        means = {name: float(np.exp(np.mean([np.log(run[name]["mse"]) for run in runs]))) for name in runs[0]}
        result["geometric_mean_mse"] = {name: {"mse": mse, "mse_relative_to_complete": mse / means["complete"]}
                                        for name, mse in means.items()}
    print(json.dumps(result, indent=2))


def one_seed(work: str, seed: int, args, test_rows: list[dict], truth: np.ndarray, observed: np.ndarray,
             persistence: dict) -> dict:
    """The three models trained with `seed` (in `work/seed_N` with several seeds) and every forecaster's scores."""
    complete = os.path.join(work, "complete")
    models = work if args.seeds == 1 else os.path.join(work, f"seed_{seed}")
    runs = {"complete": (complete, []), "masked": (os.path.join(work, "gappy"), ["--missing_values", "mask"]),
            "persistence_filled": (os.path.join(work, "filled"), [])}
    if args.refills:
        runs["masked_refilled"] = (os.path.join(work, "gappy"), ["--missing_values", "mask", "--missing_refills",
                                                                 str(args.refills)])
    result = {}
    for name, (data_dir, extra) in runs.items():
        out = os.path.join(models, f"model_{name}")
        train(data_dir, out, args.steps, seed, args.loss, extra)
        started = time.perf_counter()
        result[name] = timed(scores(rollouts(out, data_dir, test_rows), truth, observed), started)
    # the masked model with the frame's linear fill of the gaps only (`missing_fill_steps: 0`)
    started = time.perf_counter()
    result["masked_linear_fill"] = timed(scores(
        rollouts(os.path.join(models, "model_masked"), os.path.join(work, "gappy"), test_rows,
                 missing_fill_steps=0), truth, observed), started)
    # the masked model given the complete test histories too
    result["masked_given_complete_histories"] = scores(
        rollouts(os.path.join(models, "model_masked"), complete, test_rows), truth, observed)
    result["persistence"] = dict(persistence)
    reference = result["complete"]["mse"]
    for name in ("masked", "masked_linear_fill", "persistence_filled", "masked_given_complete_histories",
                 "persistence") + (("masked_refilled",) if args.refills else ()):
        result[name]["mse_relative_to_complete"] = result[name]["mse"] / reference
    return result


if __name__ == "__main__":
    main()
