"""Callbacks of a training run: `trainer_log.jsonl` (one JSON object per logging step, as LLaMA-Factory writes it),
the world model's `config.json` in the checkpoints of a LoRA run, and progress bars that suit log files."""

import json
import os
import sys
import time

from transformers import ProgressCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

LOG_FILE = "trainer_log.jsonl"
LOGGED_KEYS = ("loss", "embedding_loss", "lm_loss", "eval_loss", "eval_embedding_loss", "eval_lm_loss", "eval_mse",
               "eval_skill", "eval_rollout_mse", "learning_rate", "grad_norm", "epoch")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LogCallback(TrainerCallback):
    def __init__(self):
        self.start_time = time.time()
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time = time.time()
        self.start_step = state.global_step
        path = os.path.join(args.output_dir, LOG_FILE)
        if not state.is_world_process_zero or not os.path.exists(path):
            return
        if state.global_step == 0:
            os.remove(path)  # a fresh run
            return
        # a resumed run appends after the step it resumes from: lines a killed run wrote past it go
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        kept = [line for line in lines if line.strip() and _step_of(line) <= state.global_step]
        if len(kept) < len(lines):
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(kept)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True  # the last step is always logged, so that any run shows both loss parts

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or not ("loss" in logs or "eval_loss" in logs):
            return
        elapsed = time.time() - self.start_time
        done = state.global_step - self.start_step
        remaining = elapsed / done * (state.max_steps - state.global_step) if done > 0 else 0.0
        record = {"current_steps": state.global_step, "total_steps": state.max_steps}
        record.update({key: logs[key] for key in LOGGED_KEYS if key in logs})
        record["percentage"] = round(100 * state.global_step / state.max_steps, 2) if state.max_steps else 0.0
        record["elapsed_time"] = _clock(elapsed)
        record["remaining_time"] = _clock(remaining)
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, LOG_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class WorldModelConfigCallback(TrainerCallback):
    """PEFT saves a LoRA world model as its adapter (with the projector, head and statistics as `modules_to_save`),
    not the world model's `config.json`; this writes it into every checkpoint, so each one loads on its own."""

    def __init__(self, config):
        self.config = config

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.config.save_pretrained(os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"))


class LogFriendlyProgressCallback(ProgressCallback):
    """Hugging Face's progress bars, without the evaluation bar nested in the training bar when stderr is not a
    terminal (a log file, a CI job): there, closing it writes tqdm's cursor-up escapes into the log as text."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.training_bar is not None and not sys.stderr.isatty():
            return
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("current_steps", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a line cut by a kill: dropped with the steps after the checkpoint
