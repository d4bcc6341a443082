"""Training throughput and MFU on one GPU: a random-init Llama of about 0.55B parameters, sequences of 2048
positions (text with embedding slots), bf16, full fine-tuning through `wmfactory` (stage wm).

    python benchmarks/gpu_mfu.py [--steps 15] [--batch 4] [--peak_tflops 989]
    python benchmarks/gpu_mfu.py --variable --packing --baseline   # rows of 1/8 to all of --seq positions
    python benchmarks/gpu_mfu.py --hidden 2048 --layers 22 --compile  # about 1B parameters

`--variable` draws each row's length uniformly between seq / 8 and seq; `--packing` packs each batch's rows
(`packing: true`); `--compile` sets `torch_compile: true`; `--liger` sets `enable_liger_kernel: true` (needs the
liger-kernel package); `--baseline` also trains the same model on the same rows' tokens with a plain
`transformers.Trainer` causal-LM run (rows padded to the batch's longest, no packing) in the same process, and
reports the ratio of real (non-padding) tokens per second.

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
    parser.add_argument("--variable", action="store_true", help="rows of different lengths")
    parser.add_argument("--packing", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--liger", action="store_true")
    parser.add_argument("--baseline", action="store_true", help="also time a plain transformers.Trainer run")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from wmfactory.data.registry import write_rows
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
        share = rng.uniform(1 / 8, 1.0) if args.variable else 1.0
        text = " ".join(rng.choice(words, size=max(1, int(share * args.seq * 220 // 2048))))  # `seq` at share 1
        user = " ".join(f"{text} <m{g + 1}>" for g in range(4))
        answer = " ".join(f"<m{g + 1}> {text}" for g in range(4, 8))
        rows.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                     "embeddings": files})
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    write_rows(os.path.join(work, "data"), "rows", rows, {
        "file_name": "rows.jsonl", "columns": {"messages": "messages", "embeddings": "embeddings"}, "tags": tags})

    clock = step_clock()
    keys = {"stage": "wm", "model_name_or_path": model_dir, "torch_dtype": "bfloat16", "bf16": True,
            "finetuning_type": "full", "dataset": "rows", "dataset_dir": os.path.join(work, "data"),
            "cutoff_len": args.seq, "output_dir": os.path.join(work, "out"), "overwrite_output_dir": True,
            "per_device_train_batch_size": args.batch, "max_steps": args.steps, "learning_rate": 1e-5,
            "logging_steps": 1000, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
            "packing": args.packing, "torch_compile": args.compile}
    if args.liger:
        keys["enable_liger_kernel"] = True
    trainer = run_exp(keys, callbacks=[clock])
    step = float(np.median(np.diff(clock.ends[3:])))
    rows_ids = trainer.train_dataset.dataset.with_format(None)["input_ids"]
    lengths = [len(ids) for ids in rows_ids]
    tokens = float(np.mean(lengths)) * args.batch  # real positions per step (rows per step are the same packed)
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
    if args.baseline:
        result["plain_trainer"] = plain_trainer(model_dir, rows_ids, args, work)
        result["plain_trainer"]["mfu"] = 6 * params * result["plain_trainer"]["tokens_per_second"] / (
            args.peak_tflops * 1e12)
        result["speedup_over_plain_trainer"] = result["tokens_per_second"] / result["plain_trainer"][
            "tokens_per_second"]
    print(json.dumps(result, indent=2))


def step_clock():
    """A Trainer callback that records when each step ends (`.ends`), after the GPU has finished it."""
    import torch
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    return Clock()


def plain_trainer(model_dir: str, rows_ids: list, args, work: str) -> dict:
    """The same model and the same rows' token ids (vector slots as pad ids) through a plain `transformers.Trainer`
    causal-LM run: bf16, full fine-tuning, padded to each batch's longest row; real (non-padding) tokens/s."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    clock = step_clock()

    def collate(features):
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), 2, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    training = TrainingArguments(output_dir=os.path.join(work, "plain"), per_device_train_batch_size=args.batch,
                                 max_steps=args.steps, learning_rate=1e-5, bf16=True, logging_steps=1000,
                                 save_strategy="no", report_to="none", disable_tqdm=True, torch_compile=args.compile,
                                 use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=training, train_dataset=Dataset.from_dict({"input_ids": rows_ids}),
                      data_collator=collate, callbacks=[clock])
    trainer.train()
    step = float(np.median(np.diff(clock.ends[3:])))
    tokens = float(np.mean([len(ids) for ids in rows_ids])) * args.batch
    return {"step_seconds": step, "tokens_per_second": tokens / step}


if __name__ == "__main__":
    main()
