"""Trajectories of two coupled, damped harmonic oscillators (masses on springs), as a world-model dataset.

The state is (x1, v1, x2, v2): positions and velocities of two unit masses, each tied to a wall by a spring of
stiffness k, coupled by a spring of stiffness c, with damping b:

    x1'' = -k x1 - c (x1 - x2) - b v1        x2'' = -k x2 - c (x2 - x1) - b v2

integrated exactly (matrix exponential of the linear system) and sampled every `dt`. Each row is one trajectory:
`<m1>` ... `<mT>`, one state vector per snapshot, with random initial conditions. Writes `<out>/dataset_info.json`,
`<out>/oscillator_train.json`, `<out>/oscillator_test.json` and the vectors under `<out>/states/` (.npy).

    python examples/dynamics/make_oscillator_data.py --out data_oscillator [--rows 256] [--steps 8]
"""

import argparse
import json
import os

import numpy as np


def transition(k: float = 1.0, c: float = 0.5, b: float = 0.1, dt: float = 0.5) -> np.ndarray:
    """The exact one-step map `[4, 4]` of the linear system over `dt`."""
    a = np.array([
        [0, 1, 0, 0],
        [-(k + c), -b, c, 0],
        [0, 0, 0, 1],
        [c, 0, -(k + c), -b],
    ], dtype=np.float64)
    return _expm(a * dt)


def _expm(matrix: np.ndarray) -> np.ndarray:
    # eigendecomposition is exact enough for this small, diagonalisable system and needs only NumPy
    values, vectors = np.linalg.eig(matrix)
    return np.real(vectors @ np.diag(np.exp(values)) @ np.linalg.inv(vectors))


def write_split(out: str, name: str, rows: int, steps: int, rng: np.random.Generator, step: np.ndarray) -> None:
    data = []
    os.makedirs(os.path.join(out, "states"), exist_ok=True)
    for row in range(rows):
        state = rng.uniform(-1, 1, size=4)
        files = {}
        for t in range(steps):
            path = os.path.join("states", f"{name}_{row}_{t}.npy")
            np.save(os.path.join(out, path), state.astype(np.float32))
            files[f"m{t + 1}"] = [path]
            state = step @ state
        context = "".join(f"<m{t + 1}>" for t in range(steps // 2))
        future = "".join(f"<m{t + 1}>" for t in range(steps // 2, steps))
        data.append({
            "messages": [
                {"role": "user", "content": f"Two coupled oscillators, sampled every 0.5 s: {context} Continue."},
                {"role": "assistant", "content": future},
            ],
            "embeddings": files,
        })
    with open(os.path.join(out, f"oscillator_{name}.json"), "w") as f:
        json.dump(data, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data_oscillator")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--test_rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    step = transition()
    write_split(args.out, "train", args.rows, args.steps, rng, step)
    write_split(args.out, "test", args.test_rows, args.steps, rng, step)
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    info = {f"oscillator_{name}": {"file_name": f"oscillator_{name}.json", "formatting": "sharegpt",
                                   "columns": {"messages": "messages", "embeddings": "embeddings"}, "tags": tags}
            for name in ("train", "test")}
    with open(os.path.join(args.out, "dataset_info.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(f"wrote {args.rows} training and {args.test_rows} test trajectories of {args.steps} states to {args.out}/")


if __name__ == "__main__":
    main()
