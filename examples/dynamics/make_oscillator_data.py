"""Trajectories of two coupled, damped pendulums, as a world-model dataset.

The state is (a1, w1, a2, w2): the angles and angular velocities of two pendulums (g/L = 1) joined by a spring of
stiffness c, with damping b:

    a1'' = -sin(a1) - c (a1 - a2) - b w1        a2'' = -sin(a2) - c (a2 - a1) - b w2

Starting angles reach +-2 rad, where sin(a) is far from a, so the dynamics are nonlinear (a linear model of the
last states cannot follow them exactly). Integrated with fourth-order Runge-Kutta in steps of dt / 10 and sampled
every dt = 0.5 s. Each row is one trajectory: `<m1>` ... `<mT>`, one state vector per snapshot, with random
initial conditions. Writes `<out>/dataset_info.json`, `<out>/oscillator_train.jsonl`, `<out>/oscillator_test.jsonl`
and the vectors under `<out>/states/` (.npy).

    python examples/dynamics/make_oscillator_data.py --out data_oscillator [--rows 256] [--steps 8]
"""

import argparse
import json
import os

import numpy as np

from wmfactory.data.registry import write_rows


def derivative(state: np.ndarray, c: float = 0.5, b: float = 0.1) -> np.ndarray:
    a1, w1, a2, w2 = state
    return np.array([w1, -np.sin(a1) - c * (a1 - a2) - b * w1, w2, -np.sin(a2) - c * (a2 - a1) - b * w2])


def advance(state: np.ndarray, dt: float = 0.5, substeps: int = 10, **params) -> np.ndarray:
    """The state `dt` seconds later (Runge-Kutta 4)."""
    h = dt / substeps
    for _ in range(substeps):
        k1 = derivative(state, **params)
        k2 = derivative(state + h / 2 * k1, **params)
        k3 = derivative(state + h / 2 * k2, **params)
        k4 = derivative(state + h * k3, **params)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return state


def write_split(out: str, name: str, rows: int, steps: int, rng: np.random.Generator) -> None:
    data = []
    os.makedirs(os.path.join(out, "states"), exist_ok=True)
    for row in range(rows):
        state = rng.uniform([-2, -1, -2, -1], [2, 1, 2, 1])
        files = {}
        for t in range(steps):
            path = os.path.join("states", f"{name}_{row}_{t}.npy")
            np.save(os.path.join(out, path), state.astype(np.float32))
            files[f"m{t + 1}"] = [path]
            state = advance(state)
        context = "".join(f"<m{t + 1}>" for t in range(steps // 2))
        future = "".join(f"<m{t + 1}>" for t in range(steps // 2, steps))
        data.append({
            "messages": [
                {"role": "user", "content": f"Two coupled pendulums, sampled every 0.5 s: {context} Continue."},
                {"role": "assistant", "content": future},
            ],
            "embeddings": files,
        })
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    write_rows(out, f"oscillator_{name}", data, {"file_name": f"oscillator_{name}.jsonl", "formatting": "sharegpt",
                                                 "columns": {"messages": "messages", "embeddings": "embeddings"},
                                                 "tags": tags})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data_oscillator")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--test_rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    write_split(args.out, "train", args.rows, args.steps, rng)
    write_split(args.out, "test", args.test_rows, args.steps, rng)
    print(f"wrote {args.rows} training and {args.test_rows} test trajectories of {args.steps} states to {args.out}/")


if __name__ == "__main__":
    main()
