"""The planner's cost against rollouts, side by side in one run.

    python benchmarks/planning.py [--candidates 128] [--horizon 15] [--iterations 3] [--repeats 3]

The tiny model of this repository, trained for 30 steps with `condition_streams: a` on a controlled system (state 3,
action 1, 20 states per row; training does not change the cost). Measured, best of `repeats`:
- one planning step: `WorldModel.plan` with `candidates` x `horizon` x `iterations` (every candidate of an iteration
  one fork of the row's encoded prefix);
- one batched rollout of `candidates` rows of `horizon` steps under given actions (`rollout` of a list of rows), and
  its model part alone (the rows already encoded: `continue_rows`);
- the same candidates planned one `rollout` call each (`candidates` x `iterations` calls, the cost computed from
  each result): what user code needed before `plan`.
Also checks that the plan is reproducible under its seed and that its cost equals a rollout of its actions alone
(1e-5). Targets: the planning step at most 4x the batched rollout, and at least 20x faster than one call per
candidate. Prints JSON and a verdict."""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")
GOAL = np.array([1.0, 0.0, 0.0], dtype=np.float32)


def make_data(folder: str, rows: int = 64, steps: int = 20) -> list[dict]:
    """A damped rotation driven by a scalar action: `<s1><a1>...<s20>`, vectors inline in the rows."""
    from wmfactory.data.registry import write_rows
    from wmfactory.data.registry import OPENAI_TAGS

    rng = np.random.default_rng(0)
    angle = 0.2
    a = 0.98 * np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 0.9]])
    b = np.array([0.0, 0.1, 0.3])
    os.makedirs(os.path.join(folder, "v"), exist_ok=True)
    data = []
    for row in range(rows):
        s, files, text = rng.normal(size=3), {}, ""
        for t in range(steps):
            files[f"s{t + 1}"], text = [f"v/{row}_s{t}.npy"], text + f"<s{t + 1}>"
            np.save(os.path.join(folder, files[f"s{t + 1}"][0]), s[None].astype(np.float32))
            if t < steps - 1:
                u = rng.uniform(-1, 1, size=1)
                files[f"a{t + 1}"], text = [f"v/{row}_a{t}.npy"], text + f"<a{t + 1}>"
                np.save(os.path.join(folder, files[f"a{t + 1}"][0]), u[None].astype(np.float32))
                s = a @ s + b * u[0]
        data.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}],
                     "embeddings": files})
    write_rows(folder, "control", data, {"file_name": "control.jsonl", "formatting": "sharegpt",
                                         "columns": {"messages": "messages", "embeddings": "embeddings"},
                                         "tags": OPENAI_TAGS})
    return data


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=128)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from wmfactory import WorldModel
    from wmfactory.train.tuner import run_exp

    folder = tempfile.mkdtemp(prefix="wm_planning_")
    data_dir, model_dir = os.path.join(folder, "data"), os.path.join(folder, "model")
    rows = make_data(data_dir)
    run_exp({"stage": "wm", "model_name_or_path": TINY, "dataset": "control", "dataset_dir": data_dir,
             "condition_streams": "a", "lm_loss_weight": 0, "output_dir": model_dir, "overwrite_output_dir": True,
             "max_steps": 30, "per_device_train_batch_size": 8, "learning_rate": 3e-3, "save_strategy": "no",
             "report_to": "none", "disable_tqdm": True, "seed": 0, "use_cpu": True})
    model = WorldModel.from_pretrained(model_dir)
    keys = ("s1", "a1", "s2", "a2", "s3", "a3", "s4")  # the history: four states and the actions between them
    history = {"messages": [{"role": "user", "content": "".join(f"<{key}>" for key in keys)},
                            {"role": "assistant", "content": "ok"}],
               "embeddings": {key: rows[0]["embeddings"][key] for key in keys}}
    n, h, k = args.candidates, args.horizon, args.iterations
    context = dict(dataset_dir=data_dir, from_last_vector=True)

    def goal_cost(states: np.ndarray) -> float:
        return float(((states - GOAL) ** 2).sum())

    def plan():
        return model.plan(history, horizon=h, goal=GOAL, low=-1.0, high=1.0, candidates=n, iterations=k, seed=0,
                          **context)

    actions = np.random.default_rng(1).uniform(-1, 1, size=(n, h, 1)).astype(np.float32)

    def batched_rollout():
        return model.rollout([history] * n, h, conditions={"a": actions[0]}, **context)

    from wmfactory.inference import continue_rows, through_last_vector

    encoded = [through_last_vector(model.encode_row(history, data_dir))] * n
    given = {"a": torch.from_numpy(actions[0])}

    def batched_rollout_model_part():  # the rows already encoded: the engine's part of the batched rollout
        return continue_rows(model, encoded, h, conditions=given)

    def one_call_per_candidate():
        return [goal_cost(model.rollout(history, h, conditions={"a": actions[i % n]}, **context))
                for i in range(n * k)]

    with torch.no_grad():
        plan(), batched_rollout()  # warm-up
        result = plan()
        again = plan()
        alone = model.rollout(history, h, conditions={"a": result.actions}, **context)
        seconds = {"plan_step": best_of(plan, args.repeats), "batched_rollout": best_of(batched_rollout, args.repeats),
                   "batched_rollout_model_part": best_of(batched_rollout_model_part, args.repeats),
                   "one_rollout_call_per_candidate": best_of(one_call_per_candidate, 1)}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "candidates": n, "horizon": h, "iterations": k,
        "seconds": seconds,
        "plan_over_batched_rollout": seconds["plan_step"] / seconds["batched_rollout"],
        "plan_over_batched_rollout_model_part": seconds["plan_step"] / seconds["batched_rollout_model_part"],
        "one_call_per_candidate_over_plan": seconds["one_rollout_call_per_candidate"] / seconds["plan_step"],
        "reproducible": bool(np.array_equal(result.actions, again.actions) and result.cost == again.cost),
        "cost_vs_rollout_alone_relative": abs(result.cost - goal_cost(alone)) / max(abs(goal_cost(alone)), 1e-12),
        "best_cost_by_iteration": [float(c) for c in result.costs],
    }
    print(json.dumps(report, indent=2))
    ok = (report["plan_over_batched_rollout"] <= 4 and report["one_call_per_candidate_over_plan"] >= 20
          and report["reproducible"] and report["cost_vs_rollout_alone_relative"] <= 1e-5)
    print(f"planning step {report['plan_over_batched_rollout']:.2f}x one batched rollout of {n} rows (target <= 4), "
          f"{report['one_call_per_candidate_over_plan']:.1f}x faster than one rollout call per candidate (target "
          f">= 20), reproducible {report['reproducible']}, cost equal to a rollout of its actions alone "
          f"{report['cost_vs_rollout_alone_relative']:.1e}: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
