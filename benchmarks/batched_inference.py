"""Batched inference against row-at-a-time: `wmfactory predict` on 64 rows of different lengths, side by side in one
run.

    python benchmarks/batched_inference.py [--rows 64] [--repeats 3] [--device cpu]

The tiny model of this repository (trained for 2 steps, which does not change the cost) predicts 64 rows of 2 to 8
groups (25 to 70 positions). Measured for `predict_mode` teacher_forced and rollout, with
`per_device_eval_batch_size` 1 (row at a time) and 64 (one batch):
- the model's part: `teacher_forced_rows` / `generate_rows` over the rows, as `predict` calls them;
- the whole command `run_predict`, which also loads the model and the rows and writes one file per group.
Also checks that the batched predictions equal the row-at-a-time ones (max abs difference, bound 1e-5). Prints JSON
and a verdict (the target: the batched model part at least 4x faster in teacher_forced mode)."""

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


def make_data(folder: str, rows: int, d: int = 8) -> None:
    """Rows of 2 to 8 one-vector groups with a little text between them (.npy files)."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "e"), exist_ok=True)
    data = []
    for row in range(rows):
        groups = int(rng.integers(2, 9))
        files = {}
        for g in range(groups):
            path = f"e/{row}_{g}.npy"
            np.save(os.path.join(folder, path), rng.normal(size=(1, d)).astype(np.float32))
            files[f"m{g + 1}"] = [path]
        split = max(1, groups // 2)
        user = "Days so far: " + " then ".join(f"<m{g + 1}>" for g in range(split))
        answer = "Next: " + " then ".join(f"<m{g + 1}>" for g in range(split, groups))
        data.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                     "embeddings": files})
    from wmfactory.data.registry import write_rows
    from wmfactory.data.registry import OPENAI_TAGS

    write_rows(folder, "rows", data, {"file_name": "rows.jsonl", "formatting": "sharegpt",
                                      "columns": {"messages": "messages", "embeddings": "embeddings"},
                                      "tags": OPENAI_TAGS})


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from wmfactory.commands.common import load_model_and_rows
    from wmfactory.commands.predict import run_predict
    from wmfactory.hparams import get_predict_args
    from wmfactory.inference import generate_rows, row_batches, teacher_forced_rows
    from wmfactory.train.tuner import run_exp

    folder = tempfile.mkdtemp(prefix="wm_batched_")
    data, model_dir = os.path.join(folder, "data"), os.path.join(folder, "model")
    make_data(data, args.rows)
    run_exp({"stage": "wm", "model_name_or_path": TINY, "dataset": "rows", "dataset_dir": data,
             "output_dir": model_dir, "overwrite_output_dir": True, "finetuning_type": "full", "max_steps": 2,
             "per_device_train_batch_size": 4, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
             "seed": 0, "use_cpu": args.device == "cpu"})
    keys = {"model_name_or_path": model_dir, "dataset": "rows", "dataset_dir": data, "context_groups": 1,
            "use_cpu": args.device == "cpu", "disable_tqdm": True}
    model, rows, _ = load_model_and_rows(get_predict_args({**keys, "output_dir": os.path.join(folder, "load")}))
    rows = list(rows)
    lengths = [len(r["input_ids"]) for r in rows]

    def model_part(mode: str, size: int):
        out = []
        for batch in row_batches(rows, size):
            out += generate_rows(model, batch, 1) if mode == "rollout" else teacher_forced_rows(model, batch)
        return out

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.device}"
                   + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "rows": len(rows),
        "positions_per_row": [min(lengths), max(lengths)],
        "vectors": sum(len(r["embedding_groups"]) for r in rows),
    }
    with torch.no_grad():
        for mode in ("teacher_forced", "rollout"):
            model_part(mode, args.rows)  # warm-up
            alone, batched = model_part(mode, 1), model_part(mode, args.rows)
            difference = max(float(np.abs(b.predicted - a.predicted).max())
                             for row_a, row_b in zip(alone, batched) for a, b in zip(row_a, row_b))
            seconds = {size: best_of(lambda size=size: model_part(mode, size), args.repeats) for size in (1, 8, 64)}
            command = {size: best_of(lambda size=size: run_predict(
                {**keys, "predict_mode": mode, "per_device_eval_batch_size": size,
                 "output_dir": os.path.join(folder, f"predict_{mode}_{size}")}), args.repeats) for size in (1, 64)}
            result[mode] = {
                "model_seconds_by_batch_size": seconds,
                "model_speedup_64_over_1": seconds[1] / seconds[64],
                "model_speedup_8_over_1": seconds[1] / seconds[8],
                "command_seconds_by_batch_size": command,
                "command_speedup_64_over_1": command[1] / command[64],
                "max_abs_difference_batched_vs_alone": difference,
            }
    print(json.dumps(result, indent=2))
    speedup = result["teacher_forced"]["model_speedup_64_over_1"]
    exact = max(result[m]["max_abs_difference_batched_vs_alone"] for m in ("teacher_forced", "rollout")) <= 1e-5
    ok = speedup >= 4 and exact
    print(f"batched teacher-forced predictions {speedup:.1f}x faster than row at a time (target 4x), batched equal to "
          f"row at a time to 1e-5: {exact}: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
