"""The run folders under saves_dir and what training and evaluation wrote into them: `trainer_log.jsonl` (read
as it grows), `trainer_state.json`, `eval_results.json`, and the YAML the board started a run with."""

import json
import os
from typing import Any, Optional

from ..train.callbacks import LOG_FILE, LOGGED_KEYS
from ..eval.metrics import BASELINES

RUN_FILES = (LOG_FILE, "trainer_state.json", "config.json")
CURVE_KEYS = tuple(key for key in LOGGED_KEYS if key != "epoch")
RUN_FIGURES = ("training_loss.png", "training_embedding_loss.png", "training_lm_loss.png", "eval_horizon.png",
               "eval_trajectories.png", "eval_pit.png")


def read_log(run_dir: str) -> list[dict[str, Any]]:
    """The records of `trainer_log.jsonl`; a last line being written is left for the next read."""
    path = os.path.join(run_dir, LOG_FILE)
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def read_json(path: str) -> Optional[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def is_run(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, name)) for name in RUN_FILES)


def list_runs(saves_dir: str, depth: int = 3) -> list[str]:
    """Run folders (a training log, trainer state or model config inside) under `saves_dir`, newest first;
    checkpoints and the board's own folder are not runs."""
    found = []
    if not os.path.isdir(saves_dir):
        return found
    for root, dirs, _ in os.walk(saves_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "checkpoint-", "runs")))
        if root != saves_dir and is_run(root):
            found.append(root)
            dirs[:] = []
        elif root[len(saves_dir):].count(os.sep) >= depth:
            dirs[:] = []
    return sorted(found, key=lambda folder: -os.path.getmtime(folder))


def model_runs(saves_dir: str) -> list[str]:
    """The run folders that hold a world model (its config.json)."""
    return [run for run in list_runs(saves_dir) if os.path.isfile(os.path.join(run, "config.json"))]


def checkpoints(run_dir: str) -> list[str]:
    if not os.path.isdir(run_dir):
        return []
    names = [n for n in os.listdir(run_dir) if n.startswith("checkpoint-") and n[len("checkpoint-"):].isdigit()]
    return [os.path.join(run_dir, n) for n in sorted(names, key=lambda n: int(n[len("checkpoint-"):]))]


def progress(records: list[dict[str, Any]]) -> tuple[int, int, str, str]:
    """(step, total steps, elapsed, time left) of the newest record."""
    if not records:
        return 0, 0, "", ""
    last = records[-1]
    return (int(last.get("current_steps", 0)), int(last.get("total_steps", 0)), str(last.get("elapsed_time", "")),
            str(last.get("remaining_time", "")))


def last_value(records: list[dict[str, Any]], key: str) -> Optional[float]:
    values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
    return values[-1] if values else None


def run_dataset(run_dir: str, board_folder: str) -> str:
    """The dataset the board's YAML of this run names (a run started elsewhere records none: empty)."""
    from .forms import config_path
    from ..hparams.parser import load_yaml

    path = config_path(board_folder, run_dir)
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as f:
        config = load_yaml(f) or {}
    return str(config.get("dataset", "")) if isinstance(config, dict) else ""


def run_summary(run_dir: str, saves_dir: str, board_folder: str) -> dict[str, Any]:
    """One line of the Runs table: dataset, steps, final losses and the evaluation's headline numbers."""
    records = read_log(run_dir)
    state = read_json(os.path.join(run_dir, "trainer_state.json")) or {}
    step, total, _, _ = progress(records)
    summary: dict[str, Any] = {
        "run": os.path.relpath(run_dir, saves_dir),
        "dataset": run_dataset(run_dir, board_folder),
        "steps": f"{state.get('global_step', step)}/{state.get('max_steps', total)}",
    }
    for key in ("loss", "embedding_loss", "lm_loss", "eval_loss"):
        summary[key] = last_value(records, key)
    report = read_json(os.path.join(run_dir, "eval_results.json"))
    forced = (report or {}).get("teacher_forced", {})
    summary["eval_mse"] = forced.get("model", {}).get("mse")
    summary["eval_skill"] = forced.get("skill")
    best_baseline = [forced[b]["mse"] for b in BASELINES if isinstance(forced.get(b), dict) and "mse" in forced[b]]
    summary["best_baseline_mse"] = min(best_baseline) if best_baseline else None
    return summary


def run_figures(run_dir: str) -> list[str]:
    return [os.path.join(run_dir, name) for name in RUN_FIGURES if os.path.isfile(os.path.join(run_dir, name))]
