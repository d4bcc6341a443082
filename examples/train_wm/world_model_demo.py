"""World-model demo through the Python API: the same run as world_model_demo.sh, then a reload of the result.

    .venv/bin/python examples/train_wm/world_model_demo.py                                     # tiny model, offline
    MODEL_NAME=meta-llama/Llama-3.2-1B .venv/bin/python examples/train_wm/world_model_demo.py  # the real 1B model
    OUTPUT_DIR=saves/other .venv/bin/python examples/train_wm/world_model_demo.py

Run it from any folder: relative paths are taken from the repository root.
"""

import json
import os
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY_MODEL = "examples/models/tiny-llama"

MODEL_NAME = os.environ.get("MODEL_NAME", TINY_MODEL)
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", "saves/wm_demo")
if MODEL_NAME == TINY_MODEL:
    # The tiny model is a local folder: keep the run off the network. Must be set before transformers is imported.
    os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.chdir(REPO_ROOT)

try:
    from wmfactory.model import WorldModel  # noqa: E402
    from wmfactory.train.tuner import run_exp  # noqa: E402
except ModuleNotFoundError as err:
    if err.name != "wmfactory" and not (err.name or "").startswith(("torch", "transformers", "peft")):
        raise
    raise SystemExit(f"{err}: this script needs the package installed. Run `make install` in the repository, then "
                     f".venv/bin/python examples/train_wm/world_model_demo.py (or `pip install -e .` in your own "
                     f"environment).") from None


def main() -> None:
    args = {
        # model
        "model_name_or_path": MODEL_NAME,
        # method
        "stage": "wm",
        "finetuning_type": "lora",
        "lora_rank": 8,
        "embedding_loss_weight": 1.0,
        "world_model_loss_type": "l2",
        "embedding_dim": 4,
        # dataset
        "dataset": "wm_demo",
        "dataset_dir": "data",
        # output
        "output_dir": OUTPUT_DIR,
        "overwrite_output_dir": True,
        "logging_steps": 5,
        "save_steps": 1000,
        "plot_loss": True,
        "report_to": "none",
        # train
        "learning_rate": 1e-3,
        "num_train_epochs": 30,
        "per_device_train_batch_size": 2,
    }
    print(f"== Training world model: model={MODEL_NAME} output={OUTPUT_DIR}")
    start = time.time()
    run_exp(args)
    print(f"\n== Training done in {time.time() - start:.1f} s. Files in {OUTPUT_DIR}:")
    for name in sorted(os.listdir(OUTPUT_DIR)):
        print(f"   {name}{'/' if os.path.isdir(os.path.join(OUTPUT_DIR, name)) else ''}")

    # The output folder alone reloads the whole world model: base model + LoRA adapter + projector + head
    # (the adapter is merged into the base weights on load).
    model = WorldModel.from_pretrained(OUTPUT_DIR)
    config = model.config
    print(f"\n== Reloaded with WorldModel.from_pretrained('{OUTPUT_DIR}')")
    print(f"   base model: {config.base_model_name_or_path} ({config.finetuning_type})")
    print(f"   embedding_dim={config.embedding_dim} hidden_size={config.hidden_size}")
    for name, module in (("projector", model.projector), ("prediction_head", model.prediction_head)):
        shapes = ", ".join(f"{key} {list(value.shape)}" for key, value in module.state_dict().items())
        print(f"   {name} ({config.projector_type if name == 'projector' else config.prediction_head_type}): "
              f"{shapes}")

    with open(os.path.join(OUTPUT_DIR, "trainer_log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    curve = [(r["current_steps"], r["embedding_loss"], r["lm_loss"]) for r in records if "embedding_loss" in r]
    print("\n== Loss curve (trainer_log.jsonl)")
    print("   step  embedding_loss  lm_loss")
    for step, embedding_loss, lm_loss in curve:
        print(f"   {step:>4}  {embedding_loss:>14.4f}  {lm_loss:>7.4f}")
    # each line is the mean over the steps since the previous one; step 1 alone is one batch, so compare windows
    windows = [point for point in curve if point[0] > 1] or curve
    (first_step, first, _), (last_step, last, _) = windows[0], windows[-1]
    print(f"   embedding_loss {first:.4f} (step {first_step}) -> {last:.4f} (step {last_step}), "
          f"{first / max(last, 1e-12):.0f}x lower")


if __name__ == "__main__":
    main()
