"""Distributional heads against the deterministic one, on a system whose future branches and on one that does not.

    python benchmarks/distributional_heads.py [--steps 400] [--samples 32]

1. Double well: overdamped Langevin dynamics dx = -V'(x) dt + sqrt(2 / beta) dW in V(x) = (x^2 - 1)^2, started
   near the barrier, so that noise decides whether a particle falls left or right; recorded every 0.1 time units
   (Euler-Maruyama, 4 substeps), 10 states per trajectory, lifted to 16 dimensions by a fixed random affine map
   plus observation noise 0.01. Context: the first 2 states; scored at rollout horizon 4 (and the others).
2. Coupled pendulums (examples/dynamics): deterministic, so a distributional head must not lose accuracy: MSE of
   its mean against the deterministic head's, teacher-forced and at horizon 4.
Each head (`mlp`, `mixture`, `diffusion`) trains with the same model, data, steps and seed (10% of the training rows
held out, on which the distributional heads calibrate their sampling temperature; `--val_size 0`: no evaluation
split, the defaults, which hold out every tenth training row to calibrate); training samples/s are the Trainer's.
`--well_steps` and `--context` set the double well's states per trajectory and the states eval's rollouts are given
(with the ridge frame choosing 3 past states, `--well_steps 11 --context 3` scores horizons 1 to 8). The distributional heads are scored at their calibrated temperature and at temperature 1. Prints JSON and writes docs/images/distributional_rollouts.png (sampled rollouts against the truth)."""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

from wmfactory.data.registry import write_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")
HEADS = ("mlp", "mixture", "diffusion")
VAL_SIZE = 0.1  # `--val_size`; 0: train with the defaults (every tenth training row held out to calibrate)


def double_well(out: str, rows: int, test_rows: int, steps: int = 10, dim: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lift = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, :1]  # a unit direction in 16 dimensions
    offset = rng.normal(size=dim) * 0.5
    beta, dt, substeps = 6.0, 0.025, 4
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    for name, count in (("train", rows), ("test", test_rows)):
        data = []
        os.makedirs(os.path.join(out, "states"), exist_ok=True)
        for row in range(count):
            x = rng.normal(0.0, 0.05)
            files = {}
            for t in range(steps):
                vector = (lift[:, 0] * x + offset + rng.normal(0, 0.01, dim)).astype(np.float32)
                path = os.path.join("states", f"{name}_{row}_{t}.npy")
                np.save(os.path.join(out, path), vector)
                files[f"m{t + 1}"] = [path]
                for _ in range(substeps):
                    x += -4 * x * (x * x - 1) * dt + np.sqrt(2 / beta * dt) * rng.normal()
            context = "".join(f"<m{t + 1}>" for t in range(2))
            future = "".join(f"<m{t + 1}>" for t in range(2, steps))
            data.append({"messages": [{"role": "user", "content": f"A particle in a double well: {context} Continue."},
                                      {"role": "assistant", "content": future}], "embeddings": files})
        write_rows(out, f"well_{name}", data, {"file_name": f"well_{name}.jsonl", "tags": tags})
    np.save(os.path.join(out, "lift.npy"), np.concatenate([lift[:, 0], offset]))


def run(command: list[str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    subprocess.run([sys.executable, "-m", "wmfactory.cli", *command], env=env, check=True, capture_output=True)


def train_and_eval(work: str, data_dir: str, train: str, test: str, head: str, steps: int, samples: int,
                   context: int, seed: int = 0) -> dict:
    out = os.path.join(work, f"{train}_{head}")
    run(["train", "--stage", "wm", "--model_name", TINY, "--dataset", train, "--dataset_dir", data_dir,
         "--output_dir", out, "--overwrite_output_dir", "--finetuning_type", "lora", "--lora_rank", "16",
         "--lm_loss_weight", "0", "--prediction_head_type", head, "--per_device_train_batch_size", "16",
         "--learning_rate", "3e-3", "--max_steps", str(steps), "--lr_scheduler_type", "cosine",
         "--warmup_steps", "0.05", "--save_strategy", "no", "--logging_steps", str(steps), "--report_to", "none",
         "--seed", str(seed)] + (["--val_size", str(VAL_SIZE)] if VAL_SIZE else []))
    with open(os.path.join(out, "train_results.json")) as f:
        samples_per_second = json.load(f)["train_samples_per_second"]
    result = {"out": out, "train_samples_per_second": samples_per_second}
    calibration = os.path.join(out, "calibration_results.json")
    if os.path.exists(calibration):
        with open(calibration) as f:
            result["sampling_temperature"] = json.load(f)["sampling_temperature"]
    # the calibrated temperature saved with the model, and for distributional heads temperature 1 beside it
    for name, temperature in (("report", None), ("report_at_1", "1.0")):
        if temperature and "sampling_temperature" not in result:
            continue
        folder = os.path.join(out, name)
        run(["eval", "--model_name_or_path", out, "--dataset", test, "--dataset_dir", data_dir, "--output_dir",
             folder, "--context_groups", str(context), "--num_samples", str(samples), "--seed", "0"]
            + (["--temperature", temperature] if temperature else []))
        with open(os.path.join(folder, "eval_results.json")) as f:
            result[name] = json.load(f)
    return result


def picture(work: str, data_dir: str, outputs: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wmfactory import WorldModel

    lift = np.load(os.path.join(data_dir, "lift.npy"))
    direction, offset = lift[:16], lift[16:]
    with open(os.path.join(data_dir, "well_test.jsonl")) as f:
        row = json.loads(f.readline())
    truth = np.stack([np.load(os.path.join(data_dir, row["embeddings"][f"m{t + 1}"][0])) for t in range(10)])
    coordinate = (truth - offset) @ direction
    figure, axes = plt.subplots(1, len(outputs), figsize=(4 * len(outputs), 3.2), sharey=True, squeeze=False)
    for ax, head in zip(axes[0], outputs):
        model = WorldModel.from_pretrained(outputs[head]["out"])
        draws = model.rollout(row, steps=8, dataset_dir=data_dir, context_groups=2, num_samples=32, seed=0)
        latent = (draws - offset) @ direction  # [S, steps]
        for trajectory in latent:
            ax.plot(range(1, 10), np.r_[coordinate[1], trajectory], color="tab:blue", alpha=0.25, linewidth=1)
        ax.plot(range(10), coordinate, color="black", marker="o", markersize=3, label="true")
        ax.set_title(f"{head}: 32 sampled rollouts")
        ax.set_xlabel("step (2 given)")
    axes[0, 0].set_ylabel("position in the double well")
    axes[0, 0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--skip_pendulum", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data and eval seeds stay 0)")
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated; mlp is always trained")
    parser.add_argument("--val_size", type=float, default=0.1, help="0: no evaluation split (the defaults)")
    parser.add_argument("--well_steps", type=int, default=10, help="states per double-well trajectory")
    parser.add_argument("--context", type=int, default=2, help="double well: states given to eval's rollouts")
    parser.add_argument("--test_rows", type=int, default=64, help="double-well test trajectories")
    parser.add_argument("--picture", default=os.path.join(REPO, "docs", "images", "distributional_rollouts.png"),
                        help="where the sampled rollouts are drawn ('none': not drawn)")
    parser.add_argument("--work", help="keep the data and the trained models in this folder (default: a temporary "
                                       "one, removed at the end)")
    args = parser.parse_args()
    global VAL_SIZE
    VAL_SIZE = args.val_size
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "steps": args.steps,
              "samples": args.samples, "double_well": {}, "pendulum": {}}
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or temporary
        os.makedirs(work, exist_ok=True)
        well = os.path.join(work, "well")
        double_well(well, rows=256, test_rows=args.test_rows, steps=args.well_steps)
        heads = ["mlp"] + [h for h in args.heads.split(",") if h in HEADS and h != "mlp"]
        outputs = {head: train_and_eval(work, well, "well_train", "well_test", head, args.steps, args.samples,
                                        args.context, args.seed) for head in heads}
        for head, output in outputs.items():
            h4 = output["report"]["rollout"]["horizons"]["4"]
            if "model" not in h4:
                raise SystemExit(f"horizon 4 is not scored (too few states given: raise --context); {h4}")
            result["double_well"][head] = {
                "train_samples_per_second": output["train_samples_per_second"],
                "energy_score_h4": h4["model"]["energy_score"], "crps_h4": h4["model"]["crps"],
                "coverage_90_h4": h4["model"]["coverage_90"], "coverage_50_h4": h4["model"]["coverage_50"],
                "coverage_90_by_horizon": {h: r["model"].get("coverage_90")
                                           for h, r in output["report"]["rollout"]["horizons"].items()},
                "mse_of_mean_h4": h4["model"]["mse"],
                "sampling_temperature": output.get("sampling_temperature"),
                "coverage_90_h4_at_temperature_1": (output["report_at_1"]["rollout"]["horizons"]["4"]["model"][
                    "coverage_90"] if "report_at_1" in output else None),
                "energy_score_h4_at_temperature_1": (output["report_at_1"]["rollout"]["horizons"]["4"]["model"][
                    "energy_score"] if "report_at_1" in output else None),
                "energy_score_by_horizon": {h: r["model"]["energy_score"]
                                            for h, r in output["report"]["rollout"]["horizons"].items()},
                "baselines_energy_score_h4": {name: h4[name]["energy_score"]
                                              for name in ("persistence", "ridge", "training_mean")},
            }
        base = result["double_well"]["mlp"]["energy_score_h4"]
        for head in heads[1:]:
            result["double_well"][head]["energy_score_gain_vs_mlp"] = 1 - result["double_well"][head][
                "energy_score_h4"] / base
        if args.picture != "none":
            os.makedirs(os.path.dirname(os.path.abspath(args.picture)), exist_ok=True)
            picture(work, well, outputs, args.picture)
        if not args.skip_pendulum:
            pendulum = os.path.join(work, "pendulum")
            subprocess.run([sys.executable, os.path.join(REPO, "examples", "dynamics", "make_oscillator_data.py"),
                            "--out", pendulum], check=True, capture_output=True)
            for head in heads:
                output = train_and_eval(work, pendulum, "oscillator_train", "oscillator_test", head, args.steps,
                                        args.samples, 4, args.seed)
                report = output["report"]
                result["pendulum"][head] = {
                    "train_samples_per_second": output["train_samples_per_second"],
                    "mse_teacher_forced": report["teacher_forced"]["model"]["mse"],
                    "mse_h4": report["rollout"]["horizons"]["4"]["model"]["mse"],
                }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
