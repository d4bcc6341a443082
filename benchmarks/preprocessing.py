"""Preprocessing cold vs warm cache, and the dataloader's share of a training step.

    python benchmarks/preprocessing.py [--rows 20000] [--dim 16] [--batch 16]

Generates `--rows` rows (2 to 4 groups each, embedding files alternating .json and .npy) in a temporary folder,
preprocesses them with an empty `datasets` cache (cold: every file parsed), then again (warm: read from the Arrow
cache; only the file stats of the cache fingerprint are taken). Then times the dataloader (Arrow rows -> collated
batch) against a LoRA training step of the tiny model on the same batches. Prints JSON and a verdict."""

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
    with open(os.path.join(folder, "bench.json"), "w") as f:
        json.dump(data, f)
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    with open(os.path.join(folder, "dataset_info.json"), "w") as f:
        json.dump({"bench": {"file_name": "bench.json", "columns": {"messages": "messages",
                                                                      "embeddings": "embeddings"}, "tags": tags}}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="wmfactory-bench-")
    os.environ["HF_DATASETS_CACHE"] = os.path.join(work, "cache")  # an empty cache: the first run is cold
    os.environ["HF_HUB_OFFLINE"] = "1"

    from transformers import AutoTokenizer

    from wmfactory.data import WorldModelDataCollator, get_dataset, get_template
    from wmfactory.data.collator import collator_view
    from wmfactory.hparams import get_train_args
    from wmfactory.model import load_world_model

    start = time.perf_counter()
    generate(work, args.rows, args.dim)
    generate_seconds = time.perf_counter() - start
    config = {"model_name_or_path": TINY, "dataset": "bench", "dataset_dir": work, "stage": "wm",
              "output_dir": os.path.join(work, "out"), "cutoff_len": 256, "finetuning_type": "lora"}
    model_args, data_args, training_args, finetuning_args = get_train_args(config)
    tokenizer = AutoTokenizer.from_pretrained(TINY)
    template = get_template(None, tokenizer)

    def preprocess():
        begin = time.perf_counter()
        module = get_dataset(template, tokenizer, model_args, data_args, training_args, finetuning_args)
        return module, time.perf_counter() - begin

    module, cold = preprocess()
    module, warm = preprocess()
    dataset = module.train_dataset

    collator = WorldModelDataCollator(tokenizer.pad_token_id, module.embedding_dim)
    loader = torch.utils.data.DataLoader(collator_view(dataset), batch_size=args.batch, shuffle=True,
                                         collate_fn=collator)
    torch.manual_seed(0)
    model = load_world_model(model_args, finetuning_args, module.embedding_dim)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches, load_times, step_times = iter(loader), [], []
    for step in range(args.steps + 3):
        begin = time.perf_counter()
        batch = next(batches)
        loaded = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        done = time.perf_counter()
        if step >= 3:  # warm-up
            load_times.append(loaded - begin)
            step_times.append(done - loaded)
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
        "training_step_seconds": float(np.mean(step_times)),
        "dataloader_share_of_step": float(np.mean(load_times) / np.mean(step_times)),
    }
    print(json.dumps(result, indent=2))
    ok = result["warm_speedup"] >= 10 and result["dataloader_share_of_step"] < 0.05
    print(f"warm cache {result['warm_speedup']}x faster (bound 10x), dataloader "
          f"{100 * result['dataloader_share_of_step']:.2f}% of a step (bound 5%): {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
