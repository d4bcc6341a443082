"""Training speed and memory of the world-model stage, measured side by side in one run.

    python benchmarks/training_throughput.py [--steps 60]

1. `stage: wm` vs `stage: sft`: same model, same rows, same batch; samples/s of each (the world-model
   stage adds the head's work and the embedding loss; target: within 5% of SFT), on the 32k-vocabulary model
   below, and for information on the tiny model, whose 20 ms step is mostly per-operation overhead. Each stage
   runs twice, alternated with the other, and its faster run counts.
2. `lm_loss_weight: 0` vs `0.1` on a random-init Llama with a 32,000-token vocabulary and long answers: peak
   resident memory and step time (with weight 0 the LM head and its logits are never computed).
3. Samples/s and an MFU estimate on this CPU: 6 * parameters * tokens / step time, over the FLOP/s of a large
   float32 matrix product measured here (the CPU's practical peak). Parameters exclude the input embedding table
   (a lookup).

Each configuration runs in its own process, so that peak memory is its own. Prints JSON and a verdict."""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))
TINY = os.path.join(REPO, "examples", "models", "tiny-llama")


def make_data(folder: str, rows: int, answer_words: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "e"), exist_ok=True)
    words = "the patient state improves while the sensor reading drifts slowly over the day".split()
    data = []
    for row in range(rows):
        files = {}
        for g in range(3):
            path = f"e/{row}_{g}.npy"
            np.save(os.path.join(folder, path), rng.normal(size=(2, 16)).astype(np.float32))
            files[f"m{g + 1}"] = [path]
        answer = " ".join(rng.choice(words, size=answer_words))
        data.append({"messages": [{"role": "user", "content": "History <m1> <m2>"},
                                  {"role": "assistant", "content": f"<m3> {answer}"}], "embeddings": files})
    from wmfactory.data.registry import write_rows
    from wmfactory.data.registry import OPENAI_TAGS

    write_rows(folder, "rows", data, {"file_name": "rows.jsonl", "formatting": "sharegpt",
                                      "columns": {"messages": "messages", "embeddings": "embeddings"},
                                      "tags": OPENAI_TAGS})


def make_large_vocab_model(folder: str) -> str:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    import torch

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                         tie_word_embeddings=False, pad_token_id=2, bos_token_id=0, eos_token_id=1)
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(TINY).save_pretrained(folder)
    return folder


def child(config: dict) -> None:
    """One training run; prints its step time and peak memory as JSON on the last line."""
    from transformers import TrainerCallback

    from wmfactory.train.tuner import run_exp

    ends = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    trainer = run_exp(config, callbacks=[Clock()])
    steps = [b - a for a, b in zip(ends[4:], ends[5:])]  # after warm-up
    rows = trainer.train_dataset.dataset.with_format(None)["input_ids"][: config["per_device_train_batch_size"]]
    tokens = sum(len(ids) for ids in rows)
    # the input embedding table is a lookup, not a matrix product: left out of the FLOP count, as usual for MFU
    params = sum(p.numel() for p in trainer.model.parameters()) - trainer.model.language_model.get_input_embeddings(
    ).weight.numel()
    print(json.dumps({"step_seconds": sorted(steps)[len(steps) // 2], "peak_rss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "tokens_per_batch": tokens, "parameters": params}))


def run_child(config: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_peak_flops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 2048**3 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    import torch

    work = tempfile.mkdtemp(prefix="wmfactory-throughput-")
    os.environ["HF_DATASETS_CACHE"] = os.path.join(work, "cache")
    make_data(os.path.join(work, "short"), rows=256, answer_words=20)
    make_data(os.path.join(work, "long"), rows=64, answer_words=300)
    large = make_large_vocab_model(os.path.join(work, "vocab32k"))
    base = {"model_name_or_path": TINY, "dataset": "rows", "dataset_dir": os.path.join(work, "short"),
            "finetuning_type": "lora", "per_device_train_batch_size": 16, "max_steps": args.steps,
            "logging_steps": 1000, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
            "overwrite_output_dir": True, "disable_shuffling": True, "seed": 0}
    def stages(config: dict) -> tuple[dict, dict]:
        """wm and sft alternated, twice each, keeping each stage's faster run (the machine's noise hits both)."""
        runs = {"wm": [], "sft": []}
        for _ in range(2):
            for stage in ("wm", "sft"):
                runs[stage].append(run_child({**config, "stage": stage, "output_dir": os.path.join(work, stage)}))
        return tuple(min(runs[stage], key=lambda r: r["step_seconds"]) for stage in ("wm", "sft"))

    tiny_wm, tiny_sft = stages(base)
    # the bound is checked on a model whose step is more than per-operation overhead
    wm, sft = stages({**base, "model_name_or_path": large, "finetuning_type": "full", "max_steps": 30})
    vocab = {**base, "stage": "wm", "model_name_or_path": large, "dataset_dir": os.path.join(work, "long"),
             "finetuning_type": "full", "per_device_train_batch_size": 8}
    lm0 = run_child({**vocab, "lm_loss_weight": 0.0, "output_dir": os.path.join(work, "lm0")})
    lm01 = run_child({**vocab, "lm_loss_weight": 0.1, "output_dir": os.path.join(work, "lm01")})
    peak = cpu_peak_flops()
    batch = base["per_device_train_batch_size"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "vocab32k_wm_samples_per_second": batch / wm["step_seconds"],
        "vocab32k_sft_samples_per_second": batch / sft["step_seconds"],
        "wm_over_sft_throughput": sft["step_seconds"] / wm["step_seconds"],
        "tiny_wm_samples_per_second": batch / tiny_wm["step_seconds"],
        "tiny_sft_samples_per_second": batch / tiny_sft["step_seconds"],
        "tiny_wm_over_sft_throughput": tiny_sft["step_seconds"] / tiny_wm["step_seconds"],
        "vocab32k_lm0_step_seconds": lm0["step_seconds"],
        "vocab32k_lm01_step_seconds": lm01["step_seconds"],
        "vocab32k_lm0_peak_rss_mb": lm0["peak_rss_mb"],
        "vocab32k_lm01_peak_rss_mb": lm01["peak_rss_mb"],
        "vocab32k_tokens_per_batch": lm0["tokens_per_batch"],
        "cpu_matmul_flops": peak,
        "tiny_wm_parameters_without_input_embeddings": tiny_wm["parameters"],
        "tiny_wm_mfu": 6 * tiny_wm["parameters"] * tiny_wm["tokens_per_batch"] / tiny_wm["step_seconds"] / peak,
        "vocab32k_parameters_without_input_embeddings": lm01["parameters"],
        "vocab32k_lm01_mfu": 6 * lm01["parameters"] * lm01["tokens_per_batch"] / lm01["step_seconds"] / peak,
    }
    print(json.dumps(result, indent=2))
    ok = result["wm_over_sft_throughput"] >= 0.95 and lm0["peak_rss_mb"] < lm01["peak_rss_mb"]
    print(f"wm/sft throughput {result['wm_over_sft_throughput']:.3f} (bound 0.95); lm_loss_weight 0 peak "
          f"{lm0['peak_rss_mb']:.0f} MB vs {lm01['peak_rss_mb']:.0f} MB at 0.1: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
