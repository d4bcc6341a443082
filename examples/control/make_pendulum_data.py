"""Trajectories of gymnasium's Pendulum-v1 under random torques, as world-model rows with two streams: the state
`s` (cos angle, sin angle, angular velocity: 3 numbers) and the action `a` (the torque: 1 number), alternating
`<s1><a1><s2><a2>...<sN>`. Train with `condition_streams: a` so that actions are inputs, never targets.

    pip install gymnasium
    python examples/control/make_pendulum_data.py --out data/pendulum

Writes one .npy file per vector under <out>/vectors/, pendulum_train.jsonl and pendulum_test.jsonl (the rows), and
dataset_info.json. Every episode starts from the environment's own random state (seeded), and each torque is drawn
uniformly from the action space, held for `--hold` steps (a robot's actions change more slowly than its sensors)."""

import argparse
import json
import os

import numpy as np

from wmfactory.data.registry import write_rows


def episodes(count: int, steps: int, hold: int, seed: int, speed_init: float = 1.0):
    """`count` trajectories: (states `[steps, 3]`, actions `[steps - 1, 1]`)."""
    try:
        import gymnasium
    except ImportError:
        raise SystemExit("This example needs gymnasium: pip install gymnasium") from None
    env = gymnasium.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    for episode in range(count):
        # the angle uniform in [-pi, pi], the angular velocity in [-speed_init, speed_init] (the environment's own 1)
        state, _ = env.reset(seed=seed * 100_003 + episode, options={"y_init": speed_init})
        states, actions = [state], []
        for t in range(steps - 1):
            if t % hold == 0:
                torque = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
            state, *_ = env.step(torque)
            states.append(state)
            actions.append(torque)
        yield np.asarray(states, dtype=np.float32), np.asarray(actions, dtype=np.float32)
    env.close()


def write(out: str, name: str, count: int, steps: int, hold: int, seed: int, speed_init: float = 1.0) -> None:
    os.makedirs(os.path.join(out, "vectors"), exist_ok=True)
    rows = []
    for row, (states, actions) in enumerate(episodes(count, steps, hold, seed, speed_init)):
        files, text = {}, ""
        for t in range(steps):
            path = f"vectors/{name}_{row}_s{t + 1}.npy"
            np.save(os.path.join(out, path), states[t][None])
            files[f"s{t + 1}"], text = [path], text + f"<s{t + 1}>"
            if t < steps - 1:
                path = f"vectors/{name}_{row}_a{t + 1}.npy"
                np.save(os.path.join(out, path), actions[t][None])
                files[f"a{t + 1}"], text = [path], text + f"<a{t + 1}>"
        rows.append({"messages": [{"role": "user", "content": f"A pendulum under torques: {text}"},
                                  {"role": "assistant", "content": "Done."}],
                     "embeddings": files})
    write_rows(out, name, rows, {"file_name": f"{name}.jsonl", "formatting": "sharegpt", "tags": {
        "role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/pendulum")
    parser.add_argument("--train_rows", type=int, default=256)
    parser.add_argument("--test_rows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12, help="states per row")
    parser.add_argument("--hold", type=int, default=1, help="steps each random torque is held")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed_init", type=float, default=1.0,
                        help="initial angular velocities drawn from [-speed_init, speed_init]")
    args = parser.parse_args()
    write(args.out, "pendulum_train", args.train_rows, args.steps, args.hold, args.seed, args.speed_init)
    write(args.out, "pendulum_test", args.test_rows, args.steps, args.hold, args.seed + 1, args.speed_init)
    print(f"{args.train_rows} training and {args.test_rows} test trajectories of {args.steps} states in {args.out}")


if __name__ == "__main__":
    main()
