"""Training throughput and MFU on one GPU: a random-init Llama of about 0.55B parameters, sequences of 2048
positions (text with embedding slots), bf16, full fine-tuning through `wmfactory` (stage wm).

    python benchmarks/gpu_mfu.py [--steps 15] [--batch 4] [--peak_tflops 989]

MFU = 6 * parameters * tokens per second / peak FLOP/s (989 TFLOP/s: dense bf16 of an H100/H200 SXM), the
parameters without the input embedding table (a lookup, not a matrix product). Nothing is
downloaded: the model is built here and the tokenizer is the repository's tiny one."""

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--peak_tflops", type=float, default=989.0)
    parser.add_argument("--hidden", type=int, default=1536, help="smaller values give a quick smoke test")
    parser.add_argument("--layers", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback

    from wmfactory.train.tuner import run_exp

    work = tempfile.mkdtemp(prefix="wmfactory-mfu-")
    os.environ["HF_DATASETS_CACHE"] = os.path.join(work, "cache")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 128 or 1,
                         num_key_value_heads=max(args.hidden // 384, 1), max_position_embeddings=4096,
                         tie_word_embeddings=False, pad_token_id=2, bos_token_id=0, eos_token_id=1)
    model_dir = os.path.join(work, "model")
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(TINY).save_pretrained(model_dir)

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(work, "data", "e"))
    words = "the patient state improves while the sensor reading drifts slowly over the day".split()
    rows = []
    for row in range(args.batch * (args.steps + 2)):
        files = {}
        for g in range(8):
            path = f"e/{row}_{g}.npy"
            np.save(os.path.join(work, "data", path), rng.normal(size=(4, 64)).astype(np.float32))
            files[f"m{g + 1}"] = [path]
        text = " ".join(rng.choice(words, size=args.seq * 220 // 2048))  # 8 groups of 4 + text: `seq` positions
        user = " ".join(f"{text} <m{g + 1}>" for g in range(4))
        answer = " ".join(f"<m{g + 1}> {text}" for g in range(4, 8))
        rows.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                     "embeddings": files})
    with open(os.path.join(work, "data", "rows.json"), "w") as f:
        json.dump(rows, f)
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    with open(os.path.join(work, "data", "dataset_info.json"), "w") as f:
        json.dump({"rows": {"file_name": "rows.json", "columns": {"messages": "messages", "embeddings": "embeddings"},
                            "tags": tags}}, f)

    ends = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    trainer = run_exp({"stage": "wm", "model_name_or_path": model_dir, "torch_dtype": "bfloat16", "bf16": True,
                       "finetuning_type": "full", "dataset": "rows", "dataset_dir": os.path.join(work, "data"),
                       "cutoff_len": args.seq, "output_dir": os.path.join(work, "out"), "overwrite_output_dir": True,
                       "per_device_train_batch_size": args.batch, "max_steps": args.steps, "learning_rate": 1e-5,
                       "logging_steps": 1000, "save_strategy": "no", "report_to": "none", "disable_tqdm": True},
                      callbacks=[Clock()])
    step = float(np.median(np.diff(ends[3:])))
    lengths = [len(ids) for ids in trainer.train_dataset.dataset.with_format(None)["input_ids"]]
    tokens = float(np.mean(lengths)) * args.batch
    # the input embedding table is a lookup, not a matrix product: left out of the FLOP count, as usual for MFU
    params = sum(p.numel() for p in trainer.model.parameters()) - trainer.model.language_model.get_input_embeddings(
    ).weight.numel()
    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
        "parameters_without_input_embeddings": params,
        "positions_per_row": float(np.mean(lengths)), "batch": args.batch, "step_seconds": step,
        "tokens_per_second": tokens / step, "achieved_tflops": 6 * params * tokens / step / 1e12,
        "mfu": 6 * params * tokens / step / (args.peak_tflops * 1e12),
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
