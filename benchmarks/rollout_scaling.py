"""Rollout cost against the number of generated vectors, with the KV cache and without it.

    python benchmarks/rollout_scaling.py [--model examples/models/tiny-llama] [--device cpu] [--repeats 5]

A KV-cached rollout feeds one position per vector, so 512 vectors should cost about 8x what 64 cost (the issue's
bound is 12x); the recompute baseline runs the whole sequence again for every vector (quadratic). Also checks that
the first 64 vectors of the 512-vector rollout equal the 64-vector rollout. Ratios are measured side by side in one
run; absolute times depend on the machine, which is printed with them."""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))

from transformers import AutoTokenizer  # noqa: E402

from wmfactory.hparams import ModelArguments, WorldModelArguments  # noqa: E402
from wmfactory.model import build_world_model  # noqa: E402
from wmfactory.inference import continue_stream  # noqa: E402

ROW = {
    "messages": [{"role": "user", "content": "<m1>Patient at day 1."},
                 {"role": "assistant", "content": "<m2>Patient at day 2."}],
    "embeddings": {"m1": ["embedding_demo_data/sample_embedding_1.json"],
                   "m2": ["embedding_demo_data/sample_embedding_2.json"]},
}


@torch.no_grad()
def recompute_rollout(model, features, steps: int) -> np.ndarray:
    """The same rollout without a cache: the whole sequence is run again for every new vector."""
    ids = list(features["input_ids"])
    positions = list(features["embedding_positions"])
    vectors = [np.asarray(v, dtype=np.float32) for v in features["embedding_vectors"]]
    out = []
    for _ in range(steps):
        embeds = model.embed(torch.as_tensor(ids)[None], torch.as_tensor(np.stack(vectors)),
                             torch.as_tensor([[0, p] for p in positions]))
        hidden = model.hidden_states(embeds, None)[0, -1]
        previous = torch.as_tensor(vectors[-1])[None]
        vector = model.vectors_from_hidden(hidden[None], previous, torch.ones(1, dtype=torch.bool))[1][0].numpy()
        out.append(vector)
        positions.append(len(ids))
        ids.append(0)
        vectors.append(vector)
    return np.stack(out)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(REPO, "examples", "models", "tiny-llama"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_world_model(ModelArguments(model_name_or_path=args.model), WorldModelArguments(), embedding_dim=4)
    model.tokenizer = AutoTokenizer.from_pretrained(args.model)
    model.to(args.device).eval()
    features = model.encode_row(ROW, os.path.join(REPO, "data"))

    cached = {n: timed(lambda n=n: continue_stream(model, features, n), args.repeats) for n in (64, 512)}
    recomputed = {n: timed(lambda n=n: recompute_rollout(model, features, n), max(1, args.repeats // 2))
                  for n in (64, 512)}
    long, short = continue_stream(model, features, 512), continue_stream(model, features, 64)
    prefix_difference = float(np.abs(long[:64] - short).max())
    recompute_difference = float(np.abs(recompute_rollout(model, features, 64) - short).max())
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.device}"
                   + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""),
        "torch": torch.__version__,
        "prompt_positions": len(features["input_ids"]),
        "kv_cached_seconds": cached,
        "kv_cached_ratio_512_over_64": cached[512] / cached[64],
        "recompute_seconds": recomputed,
        "recompute_ratio_512_over_64": recomputed[512] / recomputed[64],
        "speedup_of_cache_at_512": recomputed[512] / cached[512],
        "max_abs_difference_prefix_64_of_512": prefix_difference,
        "max_abs_difference_cached_vs_recompute_64": recompute_difference,
    }
    print(json.dumps(result, indent=2))
    ok = result["kv_cached_ratio_512_over_64"] <= 12 and prefix_difference <= 1e-4
    print(f"rollout 512/64 cost ratio {result['kv_cached_ratio_512_over_64']:.2f} (bound 12), prefix difference "
          f"{prefix_difference:.2e} (bound 1e-4): {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
