"""Throughput of `wmfactory encode` against calling the encoder library directly on the same items and batch size,
and the share of `encode`'s time spent outside the encoder (reading items, writing files, rows, bookkeeping).

The encoder is a BERT of all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads, MLP 1536) with random weights and
the tiny WordPiece tokenizer, built offline into a temporary folder, so the compute per item is a real sentence
encoder's. Items: sentences of scripts/tiny_corpus.txt. Both sides run in this process with the same torch threads,
alternating, `--repeats` times each; the figures are the fastest run of each side (the one least disturbed by other
processes on a shared machine), the medians are printed beside them.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/encode_throughput.py [--items 512] [--batch_size 32] [--threads 1]
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sentences(count: int) -> list[str]:
    text = (REPO / "scripts" / "tiny_corpus.txt").read_text(encoding="utf-8")
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]
    return [found[i % len(found)] + ("" if i < len(found) else f" ({i // len(found)})") for i in range(count)]


def build_encoder(folder: str) -> str:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(REPO / "examples" / "models" / "tiny-bert")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, pad_token_id=0)
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def direct(folder: str, items: list[str], batch_size: int) -> float:
    """Seconds for the library alone: tokenize, forward, mean-pool, to numpy (model loaded beforehand)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(items), batch_size):
            tokens = tokenizer(items[i: i + batch_size], padding=True, truncation=True, max_length=128,
                               return_tensors="pt")
            hidden = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            (hidden * mask).sum(1).div(mask.sum(1)).numpy()
    return time.perf_counter() - start


def through_wmfactory(folder: str, manifest: str, output_dir: str, batch_size: int) -> tuple[float, float]:
    """(seconds of the whole `encode` call, seconds inside the encoder's forward passes)."""
    from wmfactory.commands.encode import run_encode
    from wmfactory.encode import text

    inside = [0.0]
    original = text.TextEncoder.encode_raw

    def timed(self, raws):
        start = time.perf_counter()
        try:
            return original(self, raws)
        finally:
            inside[0] += time.perf_counter() - start

    text.TextEncoder.encode_raw = timed
    try:
        start = time.perf_counter()
        run_encode({"encoder": folder, "manifest": manifest, "output_dir": output_dir, "batch_size": batch_size,
                    "max_length": 128, "overwrite_output_dir": True})
        return time.perf_counter() - start, inside[0]
    finally:
        text.TextEncoder.encode_raw = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    items = sentences(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_encoder(os.path.join(tmp, "minilm-shaped"))
        manifest = os.path.join(tmp, "items.jsonl")
        with open(manifest, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": f"s{i:05d}", "text": s}) + "\n" for i, s in enumerate(items))
        direct(folder, items[: args.batch_size], args.batch_size)  # warm-up: first-call allocations
        library, wrapped, inside = [], [], []
        for _ in range(args.repeats):
            library.append(direct(folder, items, args.batch_size))
            total, encoder = through_wmfactory(folder, manifest, os.path.join(tmp, "out"), args.batch_size)
            wrapped.append(total)
            inside.append(encoder)
    best = min(range(len(wrapped)), key=wrapped.__getitem__)
    lib, enc, ins = min(library), wrapped[best], inside[best]
    result = {"items": args.items, "batch_size": args.batch_size, "threads": args.threads,
              "library_items_per_s": round(args.items / lib, 1), "encode_items_per_s": round(args.items / enc, 1),
              "encode_over_library": round(lib / enc, 3), "share_outside_encoder": round(1 - ins / enc, 3),
              "median_encode_over_library": round(statistics.median(library) / statistics.median(wrapped), 3),
              "library_s": [round(t, 3) for t in library], "encode_s": [round(t, 3) for t in wrapped]}
    print(json.dumps(result, indent=2))
    print(f"wmfactory encode: {result['encode_items_per_s']} items/s, the library alone {result['library_items_per_s']} "
          f"items/s ({100 * (1 - lib / enc):.1f}% slower); {100 * result['share_outside_encoder']:.1f}% of encode's "
          "time is outside the encoder")
    return 0 if lib / enc >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
