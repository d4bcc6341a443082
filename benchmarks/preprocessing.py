"""Preprocessing cold vs warm cache, and the dataloader's share of a training step.

    python benchmarks/preprocessing.py [--rows 20000] [--dim 16] [--batch 16]

Generates `--rows` rows (2 to 4 groups each, embedding files alternating .json and .npy) in a temporary folder,
preprocesses them with an empty `datasets` cache (cold: every file parsed), then again (warm: read from the Arrow
cache; only the file stats of the cache fingerprint are taken). Then times the dataloader (Arrow rows -> collated
batch, inside the Trainer's `get_batch_samples`) against the whole training step as the Trainer runs it (LoRA on
the tiny model). Prints JSON and a verdict."""

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
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")


def generate(folder: str, rows: int, dim: int) -> None:
    from wmfactory.data.registry import write_rows

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "e"), exist_ok=True)
    data, file_number = [], 0
    for row in range(rows):
        groups = int(rng.integers(2, 5))
        files = {}
        for g in range(groups):
            vectors = rng.normal(size=(int(rng.integers(1, 3)), dim)).astype(np.float32)
            name = f"e/{file_number}" + (".npy" if file_number % 2 else ".json")
            path = os.path.join(folder, name)
            if name.endswith(".npy"):
                np.save(path, vectors)
            else:
                with open(path, "w") as f:
                    json.dump({"embedding": vectors.tolist(), "shape": list(vectors.shape), "modality": "bench"}, f)
            files[f"m{g + 1}"] = [name]
            file_number += 1
        user = "State history: " + " then ".join(f"<m{g + 1}>" for g in range(groups - 1))
        data.append({"messages": [{"role": "user", "content": user},
                                  {"role": "assistant", "content": f"Next: <m{groups}>"}],
                     "embeddings": files})
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    write_rows(folder, "bench", data, {"file_name": "bench.jsonl",
                                       "columns": {"messages": "messages", "embeddings": "embeddings"}, "tags": tags})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="wmfactory-bench-")
    os.environ["HF_DATASETS_CACHE"] = os.path.join(work, "cache")  # an empty cache: the first run is cold
    os.environ["HF_HUB_OFFLINE"] = "1"

    from transformers import AutoTokenizer

    from transformers import TrainerCallback

    from wmfactory.data import get_dataset, get_template
    from wmfactory.hparams import get_train_args
    from wmfactory.train.tuner import run_exp
    from wmfactory.train.wm.trainer import WorldModelTrainer

    start = time.perf_counter()
    generate(work, args.rows, args.dim)
    generate_seconds = time.perf_counter() - start
    config = {"model_name_or_path": TINY, "dataset": "bench", "dataset_dir": work, "stage": "wm",
              "output_dir": os.path.join(work, "out"), "cutoff_len": 256, "finetuning_type": "lora"}
    parsed = get_train_args(config)
    tokenizer = AutoTokenizer.from_pretrained(TINY)
    template = get_template(None, tokenizer)

    def preprocess():
        begin = time.perf_counter()
        module = get_dataset(template, tokenizer, parsed.model, parsed.data, parsed.training, parsed.world_model)
        return module, time.perf_counter() - begin

    module, cold = preprocess()
    module, warm = preprocess()
    dataset = module.train_dataset

    # the dataloader's share of a training step as the Trainer runs it: time spent fetching and collating the
    # batches of each step (`get_batch_samples`) against the time between two steps' ends
    load_times, step_ends = [], []
    original = WorldModelTrainer.get_batch_samples

    def timed_get_batch_samples(self, *a, **k):
        begin = time.perf_counter()
        out = original(self, *a, **k)
        load_times.append(time.perf_counter() - begin)
        return out

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    WorldModelTrainer.get_batch_samples = timed_get_batch_samples
    run_exp({**config, "max_steps": args.steps + 5, "per_device_train_batch_size": args.batch,
             "logging_steps": 1000, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
             "overwrite_output_dir": True}, callbacks=[StepClock()])
    WorldModelTrainer.get_batch_samples = original
    load_times, step_times = load_times[5:len(step_ends)], np.diff(step_ends)[4:]  # after 5 warm-up steps
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "rows": len(dataset),
        "embedding_files": sum(len(r) for r in dataset.select_columns("group_keys")["group_keys"]),
        "generate_seconds": round(generate_seconds, 2),
        "cold_seconds": round(cold, 3),
        "warm_seconds": round(warm, 3),
        "cold_rows_per_second": round(len(dataset) / cold),
        "warm_rows_per_second": round(len(dataset) / warm),
        "warm_speedup": round(cold / warm, 1),
        "batch_size": args.batch,
        "dataloader_seconds_per_batch": float(np.mean(load_times)),
        "training_step_seconds": float(np.mean(step_times)),  # the whole step, data loading included
        "dataloader_share_of_step": float(np.mean(load_times) / np.mean(step_times)),
    }
    print(json.dumps(result, indent=2))
    ok = result["warm_speedup"] >= 10 and result["dataloader_share_of_step"] < 0.05
    print(f"warm cache {result['warm_speedup']}x faster (bound 10x), dataloader "
          f"{100 * result['dataloader_share_of_step']:.2f}% of a step (bound 5%): {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
