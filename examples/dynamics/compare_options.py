"""Which world-model options help on the coupled pendulums? Trains the tiny model once per option (same data,
steps and seed), evaluates each on the test trajectories with 4 given states, and prints a Markdown table.

    python examples/dynamics/compare_options.py [--steps 400] [--out saves/compare]
"""

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# each option alone against the plain head (predict_residual off, no normalisation), then the residual frames
PLAIN = {"predict_residual": False, "embedding_norm": "none"}
OPTIONS = {
    "plain head (predict_residual: false)": PLAIN,
    "embedding_norm: standard": {**PLAIN, "embedding_norm": "standard"},
    "embedding_norm: robust": {**PLAIN, "embedding_norm": "robust"},
    "embedding_noise_std: 0.05": {**PLAIN, "embedding_noise_std": 0.05},
    "scheduled_sampling_prob: 0.3": {**PLAIN, "scheduled_sampling_prob": 0.3},
    "predict_residual: true": {"predict_residual": True, "embedding_norm": "none"},
    "predict_residual: true + embedding_norm: standard": {"predict_residual": True},
    "predict_residual: ridge + embedding_norm: standard (the defaults)": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", default=os.path.join(REPO, "saves", "compare"))
    parser.add_argument("--only", nargs="*", help="names of OPTIONS to run (default: all)")
    args = parser.parse_args()
    data_dir = os.path.join(args.out, "data")
    if not os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
        subprocess.run([sys.executable, os.path.join(REPO, "examples", "dynamics", "make_oscillator_data.py"),
                        "--out", data_dir], check=True)

    from wmfactory.commands.evaluate import run_eval
    from wmfactory.train.tuner import run_exp

    rows = []
    for name, option in OPTIONS.items():
        if args.only and name not in args.only:
            continue
        output_dir = os.path.join(args.out, "".join(c if c.isalnum() else "_" for c in name))
        run_exp({"stage": "wm", "model_name_or_path": os.path.join(REPO, "examples", "models", "tiny-llama"),
                 "finetuning_type": "lora", "lora_rank": 16, "lm_loss_weight": 0.0, "dataset": "oscillator_train",
                 "dataset_dir": data_dir, "output_dir": output_dir, "overwrite_output_dir": True,
                 "per_device_train_batch_size": 16, "learning_rate": 3e-3, "max_steps": args.steps,
                 "lr_scheduler_type": "cosine", "warmup_steps": 0.05, "logging_steps": 50, "save_strategy": "no",
                 "report_to": "none", "disable_tqdm": True, "seed": 0, **option})
        report = run_eval({"model_name_or_path": output_dir, "dataset": "oscillator_test", "dataset_dir": data_dir,
                           "output_dir": os.path.join(output_dir, "eval"), "context_groups": 4})
        horizons = report["rollout"]["horizons"]
        rows.append((name, report["teacher_forced"]["model"]["mse"], horizons["1"]["model"]["mse"],
                     horizons["4"]["model"]["mse"], horizons["4"]["ridge"]["mse"],
                     horizons["4"]["persistence"]["mse"]))
    lines = ["| option | teacher-forced MSE | rollout MSE h=1 | rollout MSE h=4 | ridge h=4 | persistence h=4 |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {tf:.3g} | {h1:.3g} | {h4:.3g} | {ridge:.3g} | {persistence:.3g} |"
              for name, tf, h1, h4, ridge, persistence in rows]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "comparison.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "comparison.json"), "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
