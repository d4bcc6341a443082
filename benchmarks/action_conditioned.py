"""An action-conditioned world model on gymnasium's Pendulum-v1 (state 3, torque 1), rolled out under the true
torques, against persistence, a ridge regression on the last states (no actions: eval's `ridge`) and a ridge
regression that sees the actions; and the training speed of two streams against one stream of the same vectors.

    pip install gymnasium
    python benchmarks/action_conditioned.py [--steps 1200] [--context 4]

Data: examples/control/make_pendulum_data.py (256 training and 64 test episodes of 12 states, a random torque per
step). The model sees the first `context` states and the torques between them, then generates the next states
while the test episode's own torques are given (`condition_streams: a`). Scores: MSE per horizon on the state.
The ridge with actions fits s_{t+1} from (s_t, s_{t-1}, a_t, a_{t-1}, 1) on every training transition (closed
form, the same penalty as eval's ridge), rolled out from the same context under the same torques.
Training methods: the same model trained with scheduled sampling (probability 0.5) and with `unroll_steps: 3`.
Speed: the same rows with the torques zero-padded to 3 numbers and keyed as states (one stream, every vector after
the first a target), trained with the same settings; samples/s are the Trainer's. Prints JSON and writes
docs/images/action_conditioned.png (predicted against true states of one test episode)."""

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
RIDGE_LAMBDA = 1e-3


def run(command: list[str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-m", "wmfactory.cli", *command], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])


def load_rows(data_dir: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(states `[rows, T, 3]`, actions `[rows, T - 1, 1]`) of a dataset written by make_pendulum_data.py."""
    with open(os.path.join(data_dir, f"{name}.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    states, actions = [], []
    for row in rows:
        files = row["embeddings"]
        count = sum(key.startswith("s") for key in files)
        states.append([np.load(os.path.join(data_dir, files[f"s{t}"][0]))[0] for t in range(1, count + 1)])
        actions.append([np.load(os.path.join(data_dir, files[f"a{t}"][0]))[0] for t in range(1, count)])
    return np.asarray(states, dtype=np.float64), np.asarray(actions, dtype=np.float64)


def ridge_with_actions(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Weights `[2*3 + 2*1 + 1, 3]` of s_{t+1} ~ (s_t, s_{t-1}, a_t, a_{t-1}, 1)."""
    features, targets = [], []
    for t in range(1, states.shape[1] - 1):
        features.append(np.concatenate([states[:, t], states[:, t - 1], actions[:, t], actions[:, t - 1],
                                        np.ones((len(states), 1))], axis=1))
        targets.append(states[:, t + 1])
    x, y = np.concatenate(features), np.concatenate(targets)
    gram = x.T @ x
    penalty = RIDGE_LAMBDA * len(x) * np.eye(len(gram))
    penalty[-1, -1] = 0.0
    return np.linalg.solve(gram + penalty, x.T @ y)


def ridge_rollout(weights, states, actions, context: int, horizons: int) -> np.ndarray:
    """`[rows, horizons, 3]`: from the first `context` states, under the true actions."""
    s = [states[:, context - 2], states[:, context - 1]]
    out = []
    for h in range(horizons):
        t = context - 1 + h  # the index of the current state
        x = np.concatenate([s[-1], s[-2], actions[:, t], actions[:, t - 1], np.ones((len(states), 1))], axis=1)
        s.append(x @ weights)
        out.append(s[-1])
    return np.stack(out, axis=1)


def one_stream_copy(data_dir: str, out: str, name: str) -> None:
    """The same rows with every torque zero-padded to 3 numbers and keyed as a state: one stream."""
    with open(os.path.join(data_dir, f"{name}.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    os.makedirs(os.path.join(out, "vectors"), exist_ok=True)
    for i, row in enumerate(rows):
        files, text, n = {}, "", 0
        keys = sorted(row["embeddings"], key=lambda k: (int(k[1:]), k[0] == "a"))  # s1, a1, s2, a2, ...
        for key in keys:
            vector = np.load(os.path.join(data_dir, row["embeddings"][key][0]))
            n += 1
            path = f"vectors/{i}_{n}.npy"
            np.save(os.path.join(out, path), np.pad(vector, ((0, 0), (0, 3 - vector.shape[1]))))
            files[f"m{n}"], text = [path], text + f"<m{n}>"
        row["embeddings"] = files
        row["messages"][0]["content"] = f"A pendulum under torques: {text}"
    with open(os.path.join(data_dir, "dataset_info.json")) as f:
        entry = json.load(f)[name]
    write_rows(out, name, rows, entry)


def train(data_dir: str, out: str, steps: int, extra: list[str]) -> float:
    run(["train", "--stage", "wm", "--model_name", TINY, "--dataset", "pendulum_train", "--dataset_dir", data_dir,
         "--output_dir", out, "--overwrite_output_dir", "--finetuning_type", "lora", "--lora_rank", "16",
         "--lm_loss_weight", "0", "--per_device_train_batch_size", "16", "--learning_rate", "3e-3",
         "--max_steps", str(steps), "--lr_scheduler_type", "cosine", "--warmup_steps", "0.05", "--save_strategy",
         "no", "--logging_steps", str(steps), "--report_to", "none", "--seed", "0", *extra])
    with open(os.path.join(out, "train_results.json")) as f:
        return json.load(f)["train_samples_per_second"]


def picture(model_dir: str, data_dir: str, context: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wmfactory import WorldModel

    states, actions = load_rows(data_dir, "pendulum_test")
    model = WorldModel.from_pretrained(model_dir)
    with open(os.path.join(data_dir, "pendulum_test.jsonl")) as f:
        row = json.loads(f.readline())
    horizon = states.shape[1] - context
    # the context ends with the torque after state `context`; the torques after states context + 1, ... follow
    rolled = model.rollout(row, steps=horizon, dataset_dir=data_dir, context_groups=2 * context,
                           conditions={"a": actions[0, context:]})
    blind = model.rollout(row, steps=horizon, dataset_dir=data_dir, context_groups=2 * context,
                          conditions={"a": np.zeros_like(actions[0, context:])})
    angle = lambda s: np.arctan2(s[..., 1], s[..., 0])  # noqa: E731
    t = np.arange(states.shape[1])
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(t, angle(states[0]), "k-o", markersize=3, label="true")
    axes[0].plot(t[context:], angle(rolled), "tab:blue", marker="o", markersize=3, label="rolled out, true torques")
    axes[0].plot(t[context:], angle(blind), "tab:orange", linestyle="--", label="rolled out, zero torque")
    axes[0].axvline(context - 0.5, color="grey", linewidth=0.8)
    axes[0].set_xlabel(f"step ({context} states given)")
    axes[0].set_ylabel("angle (rad)")
    axes[0].legend(fontsize=7)
    axes[1].step(t[:-1], actions[0, :, 0], where="post", color="grey")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("torque (given)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--context", type=int, default=4, help="states given before the rollout")
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--speed_only", action="store_true", help="only the training speed of one and two streams")
    parser.add_argument("--skip_training_methods", action="store_true",
                        help="skip scheduled sampling (0.5) and unroll_steps 3, trained and scored the same way")
    args = parser.parse_args()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "steps": args.steps,
              "context_states": args.context}
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "pendulum")
        subprocess.run([sys.executable, os.path.join(REPO, "examples", "control", "make_pendulum_data.py"),
                        "--out", data], check=True, capture_output=True)
        model_dir = os.path.join(work, "model")
        if args.speed_only:
            single = os.path.join(work, "single")
            for name in ("pendulum_train", "pendulum_test"):
                one_stream_copy(data, single, name)
            runs = (("one_stream", single, []), ("two_streams", data, ["--condition_streams", "a"]))
            for name, folder, extra in runs:
                result[f"samples_per_second_{name}"] = train(folder, os.path.join(work, name), args.steps, extra)
            result["two_streams_speed_ratio"] = (result["samples_per_second_two_streams"]
                                                 / result["samples_per_second_one_stream"])
            print(json.dumps(result, indent=2))
            return
        result["samples_per_second_two_streams"] = train(data, model_dir, args.steps,
                                                          ["--condition_streams", "a"])
        run(["eval", "--model_name_or_path", model_dir, "--dataset", "pendulum_test", "--dataset_dir", data,
             "--output_dir", os.path.join(work, "eval"), "--context_groups", str(2 * args.context)])
        with open(os.path.join(work, "eval", "eval_results.json")) as f:
            report = json.load(f)
        states, actions = load_rows(data, "pendulum_train")
        test_states, test_actions = load_rows(data, "pendulum_test")
        weights = ridge_with_actions(states, actions)
        horizons = test_states.shape[1] - args.context
        with_actions = ridge_rollout(weights, test_states, test_actions, args.context, horizons)
        table = {}
        for h, block in report["rollout"]["horizons"].items():
            truth = test_states[:, args.context - 1 + int(h)]
            table[h] = {"vectors": block["vectors"], "model": block["model"]["mse"],
                        "persistence": block["persistence"]["mse"], "ridge_without_actions": block["ridge"]["mse"],
                        "ridge_with_actions": float(np.mean((with_actions[:, int(h) - 1] - truth) ** 2)),
                        "training_mean": block["training_mean"]["mse"]}
        result["rollout_mse"] = table
        result["teacher_forced_mse"] = {"model": report["teacher_forced"]["model"]["mse"],
                                        "persistence": report["teacher_forced"]["persistence"]["mse"],
                                        "ridge_without_actions": report["teacher_forced"]["ridge"]["mse"]}
        if not args.skip_training_methods:
            methods = {"scheduled_sampling_0.5": ["--scheduled_sampling_prob", "0.5"],
                       "unroll_3": ["--unroll_steps", "3"]}
            result["rollout_mse_by_training"] = {"teacher_forcing": {h: row["model"] for h, row in table.items()}}
            for name, extra in methods.items():
                out = os.path.join(work, name)
                train(data, out, args.steps, ["--condition_streams", "a", *extra])
                run(["eval", "--model_name_or_path", out, "--dataset", "pendulum_test", "--dataset_dir", data,
                     "--output_dir", os.path.join(out, "eval"), "--context_groups", str(2 * args.context)])
                with open(os.path.join(out, "eval", "eval_results.json")) as f:
                    other = json.load(f)
                result["rollout_mse_by_training"][name] = {h: b["model"]["mse"]
                                                           for h, b in other["rollout"]["horizons"].items()}
        os.makedirs(os.path.join(REPO, "docs", "images"), exist_ok=True)
        picture(model_dir, data, args.context, os.path.join(REPO, "docs", "images", "action_conditioned.png"))
        if not args.skip_speed:
            single = os.path.join(work, "single")
            for name in ("pendulum_train", "pendulum_test"):
                one_stream_copy(data, single, name)
            result["samples_per_second_one_stream"] = train(single, os.path.join(work, "model1"), args.steps, [])
            result["two_streams_speed_ratio"] = (result["samples_per_second_two_streams"]
                                                 / result["samples_per_second_one_stream"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
