"""Swing gymnasium's Pendulum-v1 up with a world model: model-predictive control in closed loop.

    pip install gymnasium
    python examples/control/swing_up.py [--out saves/swing_up] [--train_steps 1500] [--starts 4] [--steps 100]

1. Data: random-torque episodes of 20 states (`make_pendulum_data.py`, initial angular velocities up to 6 rad/s, so
   that the rows visit the fast states of a swing-up), states `s` (cos, sin, angular velocity) and torques `a`
   alternating.
2. Training: the tiny model of this repository with `condition_streams: a` (LoRA rank 16, `lm_loss_weight: 0`).
3. Closed loop, from the pendulum hanging down (`starts` episodes of `steps` steps): at every step the last
   `context` states and torques are the row, `WorldModel.plan` chooses the next `horizon` torques by CEM
   (`candidates` x `iterations`, warm-started with the previous plan shifted by one), the first torque is executed
   in the environment, and the loop plans again. The cost is the environment's own: angle^2 + 0.1 velocity^2 +
   0.001 torque^2 over the predicted states.
4. The same CEM (`search_actions`, warm-started the same way) over the true dynamics (the oracle: the same search
   with a perfect model), random torques and zero torque, from the same starts.

Prints the mean episode return of each and the share of the oracle's gain over random torques that the world
model's planner recovers, (R_wm - R_random) / (R_oracle - R_random); writes `results.json` and `swing_up.png` (the
distance of the angle from upright over time, for each policy) into `out`. About 5 minutes on 2 CPU cores."""

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
MAX_TORQUE = 2.0


def pendulum_step(theta: torch.Tensor, speed: torch.Tensor, torque: torch.Tensor):
    """Pendulum-v1's dynamics (g 10, m 1, l 1, dt 0.05, speed clipped at 8) on batches of states."""
    torque = torque.clamp(-MAX_TORQUE, MAX_TORQUE)
    speed = (speed + (3 * 10.0 / 2 * torch.sin(theta) + 3.0 * torque) * 0.05).clamp(-8, 8)
    return theta + speed * 0.05, speed


def step_cost(theta: torch.Tensor, speed: torch.Tensor, torque: torch.Tensor) -> torch.Tensor:
    """The negative of Pendulum-v1's reward."""
    angle = torch.remainder(theta + torch.pi, 2 * torch.pi) - torch.pi
    return angle ** 2 + 0.1 * speed ** 2 + 0.001 * torque ** 2


def world_model_cost(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The planner's cost on predicted states `[N, H, 3]` (cos, sin, speed) and torques `[N, H, 1]`."""
    theta = torch.atan2(states[..., 1], states[..., 0])
    return step_cost(theta, states[..., 2], actions[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)).sum(1)


def history_row(states: list, actions: list, context: int) -> dict:
    """The last `context` states and the torques between them as a row in the dataset format (vectors inline)."""
    states, actions = states[-context:], actions[len(actions) - len(states) + 1:] if len(states) > 1 else []
    text, embeddings = "", {}
    for t, state in enumerate(states):
        embeddings[f"s{t + 1}"], text = [np.asarray(state, np.float32)[None]], text + f"<s{t + 1}>"
        if t < len(states) - 1:
            embeddings[f"a{t + 1}"], text = [np.asarray(actions[t], np.float32)[None]], text + f"<a{t + 1}>"
    return {"messages": [{"role": "user", "content": f"A pendulum under torques: {text}"},
                         {"role": "assistant", "content": "Done."}], "embeddings": embeddings}


def run_episode(env, start: float, policy, steps: int) -> tuple[float, list[float]]:
    """One episode from angle `start` at rest; `policy(states, actions, theta, speed)` -> torque. Returns (return,
    angles)."""
    env.reset(seed=0)
    env.unwrapped.state = np.array([start, 0.0])
    theta, speed = start, 0.0
    states, actions, angles, total = [[np.cos(theta), np.sin(theta), speed]], [], [], 0.0
    for _ in range(steps):
        torque = float(np.clip(policy(states, actions, theta, speed), -MAX_TORQUE, MAX_TORQUE))
        observation, reward, *_ = env.step(np.array([torque], dtype=np.float32))
        total += float(reward)
        theta, speed = (float(v) for v in env.unwrapped.state)
        angles.append(float(np.arctan2(observation[1], observation[0])))
        states.append([float(v) for v in observation])
        actions.append([torque])
    return total, angles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="saves/swing_up")
    parser.add_argument("--train_steps", type=int, default=1500)
    parser.add_argument("--train_rows", type=int, default=512)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--candidates", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--context", type=int, default=4, help="states of history given to the planner")
    parser.add_argument("--reuse", action="store_true", help="keep the data and model already in --out")
    args = parser.parse_args()
    try:
        import gymnasium
    except ImportError:
        raise SystemExit("This example needs gymnasium: pip install gymnasium") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, os.path.join(REPO, "src"))
    from wmfactory import WorldModel
    from wmfactory.inference.planning import search_actions, shift_plan

    data_dir, model_dir = os.path.join(args.out, "data"), os.path.join(args.out, "model")
    env_vars = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    started = time.perf_counter()
    if not (args.reuse and os.path.isdir(model_dir)):
        subprocess.run([sys.executable, os.path.join(HERE, "make_pendulum_data.py"), "--out", data_dir,
                        "--train_rows", str(args.train_rows), "--test_rows", "16", "--steps", "20",
                        "--speed_init", "6"], check=True)
        subprocess.run([sys.executable, "-m", "wmfactory.cli", "train", "--stage", "wm", "--model_name_or_path", TINY,
                        "--dataset", "pendulum_train", "--dataset_dir", data_dir, "--condition_streams", "a",
                        "--lm_loss_weight", "0", "--finetuning_type", "lora", "--lora_rank", "16",
                        "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--lr_scheduler_type",
                        "cosine", "--warmup_steps", "0.05", "--max_steps", str(args.train_steps), "--save_strategy",
                        "no", "--logging_steps", "100", "--report_to", "none", "--output_dir", model_dir,
                        "--overwrite_output_dir", "--disable_tqdm", "true"], check=True, env=env_vars)
    trained = time.perf_counter()
    model = WorldModel.from_pretrained(model_dir)
    torch.set_num_threads(int(env_vars["OMP_NUM_THREADS"]))
    low, high = torch.tensor([-MAX_TORQUE]), torch.tensor([MAX_TORQUE])
    options = dict(candidates=args.candidates, iterations=args.iterations, seed=0)
    previous = {}  # each planner's last plan, shifted by one step as the next one's warm start

    def oracle(states, actions, theta, speed):
        def evaluate(torques: torch.Tensor):  # [N, H, 1] -> the true cost of each sequence
            th = torch.full((len(torques),), theta, dtype=torch.float64)
            sp = torch.full((len(torques),), speed, dtype=torch.float64)
            total = torch.zeros(len(torques), dtype=torch.float64)
            for k in range(torques.shape[1]):
                u = torques[:, k, 0].double()
                th, sp = pendulum_step(th, sp, u)
                total += step_cost(th, sp, u)
            return total.float(), lambda i: None
        warm = shift_plan(previous["plan"]) if "plan" in previous else None
        previous["plan"] = search_actions(evaluate, args.horizon, low, high, warm_start=warm, **options).actions
        return float(previous["plan"][0, 0])

    def world_model(states, actions, theta, speed):
        row = history_row(states, actions, args.context)
        warm = shift_plan(previous["plan"]) if "plan" in previous else None
        result = model.plan(row, horizon=args.horizon, cost=world_model_cost, low=-MAX_TORQUE, high=MAX_TORQUE,
                            pattern=["a", "s"], from_last_vector=True, warm_start=warm, **options)
        previous["plan"] = result.actions
        return float(result.actions[0, 0])

    rng = np.random.default_rng(0)
    policies = {"world model (CEM)": world_model, "oracle (CEM on the true dynamics)": oracle,
                "random torques": lambda *_: rng.uniform(-MAX_TORQUE, MAX_TORQUE), "zero torque": lambda *_: 0.0}
    env = gymnasium.make("Pendulum-v1")
    starts = [float(np.pi + offset) for offset in np.linspace(-0.2, 0.2, args.starts)]  # hanging down
    returns, angles, seconds = {}, {}, {}
    for name, policy in policies.items():
        began = time.perf_counter()
        episodes = []
        for start in starts:
            previous.clear()
            episodes.append(run_episode(env, start, policy, args.steps))
        seconds[name] = time.perf_counter() - began
        returns[name] = [r for r, _ in episodes]
        angles[name] = [a for _, a in episodes]
        print(f"{name:36} mean return {np.mean(returns[name]):9.1f}  ({seconds[name]:.1f} s)", flush=True)
    mean = {name: float(np.mean(r)) for name, r in returns.items()}
    wm, best, rand = mean["world model (CEM)"], mean["oracle (CEM on the true dynamics)"], mean["random torques"]
    recovered = (wm - rand) / (best - rand)
    print(f"share of the oracle's gain over random torques recovered by the world model: {recovered:.3f}")
    result = {"mean_return": mean, "returns": returns, "recovered": recovered, "seconds": seconds,
              "training_seconds": trained - started, "starts": starts, "steps": args.steps,
              "horizon": args.horizon, "candidates": args.candidates, "iterations": args.iterations,
              "train_steps": args.train_steps, "train_rows": args.train_rows, "context": args.context,
              "machine": f"{os.uname().machine}, {os.cpu_count()} CPU cores"}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot(angles, starts, os.path.join(args.out, "swing_up.png"))
    print(f"wrote {os.path.join(args.out, 'results.json')} and swing_up.png")


def plot(angles: dict, starts: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(angles), figsize=(4 * len(angles), 3.2), sharey=True)
    for ax, (name, runs) in zip(axes, angles.items()):
        for run in runs:
            ax.plot(np.arange(1, len(run) + 1) * 0.05, np.abs(run), lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("|angle| (rad; 0 upright, 3.14 hanging)")
    fig.suptitle(f"Pendulum-v1 from hanging down, {len(starts)} starts", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
