"""Choose a treatment plan with a world model: a simulated patient, two treatments, closed-loop planning.

    python examples/treatment/plan_treatment.py [--out saves/treatment] [--train_steps 800] [--patients 8]

The patient (a made-up model, for illustration): a state s of two numbers, the disease marker m (0 is healthy; it
drifts up by itself) and the side-effect burden b, under the doses a = (dose of A, dose of B), each in [0, 1]:

    m' = 0.95 m + 0.10 - 0.25 A - 0.12 B + noise        A works twice as well as B ...
    b' = 0.70 b + 0.30 A + 0.05 B                       ... and costs six times the side effects

1. Data: 256 patients of 12 visits under random doses, `<s1><a1><s2>...<s12>` (`condition_streams: a`).
2. Training: the tiny model of this repository (LoRA rank 16, `lm_loss_weight: 0`).
3. Closed loop, for each test patient: at every visit the visits so far are the row, `WorldModel.plan` picks the
   doses of the next `horizon` visits by CEM for the cost (m - 0)^2 + 0.5 b summed over the predicted states, the
   first doses are given to the (simulated) patient, and the next visit plans again.
4. Fixed policies from the same patients: no treatment, full A, full B, half of each.

Prints and writes (`results.json`, `treatment.png`) the true cost of each policy over `visits` visits, scored by
the simulator, not by the model."""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")
SIDE_EFFECT_WEIGHT = 0.5


def patient_step(state: np.ndarray, doses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    m, b = state
    dose_a, dose_b = np.clip(doses, 0.0, 1.0)
    m = 0.95 * m + 0.10 - 0.25 * dose_a - 0.12 * dose_b + 0.02 * rng.normal()
    b = 0.70 * b + 0.30 * dose_a + 0.05 * dose_b
    return np.array([m, b], dtype=np.float32)


def true_cost(state: np.ndarray) -> float:
    return float(state[0] ** 2 + SIDE_EFFECT_WEIGHT * state[1])


def planner_cost(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The same cost on the predicted states `[N, H, 2]`, summed over the horizon."""
    return (states[..., 0] ** 2 + SIDE_EFFECT_WEIGHT * states[..., 1]).sum(1)


def row_of(states: list, doses: list) -> dict:
    """Visits `<s1><a1>...<sk>` as a row in the dataset format (vectors inline)."""
    text, embeddings = "", {}
    for t, state in enumerate(states):
        embeddings[f"s{t + 1}"], text = [np.asarray(state, np.float32)[None]], text + f"<s{t + 1}>"
        if t < len(states) - 1:
            embeddings[f"a{t + 1}"], text = [np.asarray(doses[t], np.float32)[None]], text + f"<a{t + 1}>"
    return {"messages": [{"role": "user", "content": f"Visits of a patient: {text}"},
                         {"role": "assistant", "content": "Noted."}], "embeddings": embeddings}


def write_data(folder: str, patients: int, visits: int, seed: int) -> None:
    sys.path.insert(0, os.path.join(REPO, "src"))
    from wmfactory.data.registry import write_rows
    from wmfactory.data.registry import OPENAI_TAGS

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "vectors"), exist_ok=True)
    rows = []
    for patient in range(patients):
        state = np.array([rng.uniform(0.5, 2.0), rng.uniform(0.0, 0.5)], dtype=np.float32)
        files, text = {}, ""
        for t in range(visits):
            files[f"s{t + 1}"], text = [f"vectors/p{patient}_s{t + 1}.npy"], text + f"<s{t + 1}>"
            np.save(os.path.join(folder, files[f"s{t + 1}"][0]), state[None])
            if t < visits - 1:
                doses = rng.uniform(0, 1, size=2).astype(np.float32)
                files[f"a{t + 1}"], text = [f"vectors/p{patient}_a{t + 1}.npy"], text + f"<a{t + 1}>"
                np.save(os.path.join(folder, files[f"a{t + 1}"][0]), doses[None])
                state = patient_step(state, doses, rng)
        rows.append({"messages": [{"role": "user", "content": f"Visits of a patient: {text}"},
                                  {"role": "assistant", "content": "Noted."}], "embeddings": files})
    write_rows(folder, "patients", rows, {"file_name": "patients.jsonl", "formatting": "sharegpt",
                                          "columns": {"messages": "messages", "embeddings": "embeddings"},
                                          "tags": OPENAI_TAGS})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="saves/treatment")
    parser.add_argument("--train_steps", type=int, default=800)
    parser.add_argument("--patients", type=int, default=8, help="test patients")
    parser.add_argument("--visits", type=int, default=10, help="visits per test patient")
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--reuse", action="store_true", help="keep the data and model already in --out")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, os.path.join(REPO, "src"))
    from wmfactory import WorldModel

    data_dir, model_dir = os.path.join(args.out, "data"), os.path.join(args.out, "model")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    started = time.perf_counter()
    if not (args.reuse and os.path.isdir(model_dir)):
        write_data(data_dir, patients=256, visits=12, seed=0)
        subprocess.run([sys.executable, "-m", "wmfactory.cli", "train", "--stage", "wm", "--model_name_or_path", TINY,
                        "--dataset", "patients", "--dataset_dir", data_dir, "--condition_streams", "a",
                        "--lm_loss_weight", "0", "--finetuning_type", "lora", "--lora_rank", "16",
                        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--lr_scheduler_type",
                        "cosine", "--max_steps", str(args.train_steps), "--save_strategy", "no", "--logging_steps",
                        "100", "--report_to", "none", "--output_dir", model_dir, "--overwrite_output_dir",
                        "--disable_tqdm", "true"], check=True, env=env)
    trained = time.perf_counter()
    model = WorldModel.from_pretrained(model_dir)
    torch.set_num_threads(int(env["OMP_NUM_THREADS"]))

    def planned(states, doses):
        result = model.plan(row_of(states, doses), horizon=args.horizon, cost=planner_cost, low=0.0, high=1.0,
                            candidates=args.candidates, iterations=3, seed=0, pattern=["a", "s"],
                            from_last_vector=True)
        return result.actions[0]

    policies = {"world model (CEM)": planned, "no treatment": lambda *_: np.zeros(2),
                "full A": lambda *_: np.array([1.0, 0.0]), "full B": lambda *_: np.array([0.0, 1.0]),
                "half of each": lambda *_: np.array([0.5, 0.5])}
    starts = np.random.default_rng(1).uniform([0.5, 0.0], [2.0, 0.5], size=(args.patients, 2)).astype(np.float32)
    costs, markers = {}, {}
    for name, policy in policies.items():
        totals, runs = [], []
        for patient, start in enumerate(starts):
            rng = np.random.default_rng(100 + patient)  # the same noise for every policy
            states, doses, total = [start], [], 0.0
            for _ in range(args.visits):
                dose = np.clip(np.asarray(policy(states, doses), dtype=np.float32), 0, 1)
                states.append(patient_step(states[-1], dose, rng))
                doses.append(dose)
                total += true_cost(states[-1])
            totals.append(total)
            runs.append([float(s[0]) for s in states])
        costs[name], markers[name] = totals, runs
        print(f"{name:20} mean true cost {np.mean(totals):7.3f}", flush=True)
    mean = {name: float(np.mean(c)) for name, c in costs.items()}
    best_fixed = min((c, n) for n, c in mean.items() if n != "world model (CEM)")
    print(f"world model's plan: {mean['world model (CEM)']:.3f}; best fixed policy ({best_fixed[1]}): "
          f"{best_fixed[0]:.3f}")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"mean_cost": mean, "costs": costs, "training_seconds": trained - started,
                   "horizon": args.horizon, "candidates": args.candidates, "visits": args.visits,
                   "patients": args.patients, "train_steps": args.train_steps}, f, indent=2)
    plot(markers, os.path.join(args.out, "treatment.png"))


def plot(markers: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, runs in markers.items():
        ax.plot(np.mean(runs, axis=0), label=name, lw=2 if name.startswith("world") else 1)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("visit")
    ax.set_ylabel("disease marker (mean over patients)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
