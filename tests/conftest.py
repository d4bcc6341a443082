"""Shared fixtures: the committed tiny model, and helpers that write small datasets in the seed format."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = str(REPO / "examples" / "models" / "tiny-llama")
TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
        "system_tag": "system"}


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_MODEL)


def distribution_scores(samples, target, quantile_levels=None) -> dict:
    """`eval.metrics.DistributionScores` of samples `[n, S, d]` against targets `[n, d]`, given all at once."""
    from wmfactory.eval.metrics import QUANTILE_LEVELS, DistributionScores

    scores = DistributionScores(QUANTILE_LEVELS if quantile_levels is None else quantile_levels)
    scores.add(samples, target)
    return scores.result()


def write_embedding(path: Path, matrix, **extra) -> str:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"embedding": matrix.tolist(), "shape": list(matrix.shape), "description": "test", "modality": "test"}
    content.update(extra)
    path.write_text(json.dumps(content))
    return str(path)


def write_dataset(dataset_dir: Path, name: str, rows: list[dict], info_extra: dict | None = None) -> str:
    """Writes `<dataset_dir>/<name>.json` and registers it in dataset_info.json (merging with existing entries)."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    (dataset_dir / f"{name}.json").write_text(json.dumps(rows))
    info_path = dataset_dir / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = {"file_name": f"{name}.json", "formatting": "sharegpt",
                  "columns": {"messages": "messages", "embeddings": "embeddings"}, "tags": TAGS, **(info_extra or {})}
    info_path.write_text(json.dumps(info))
    return str(dataset_dir)


def rotation_matrix(d: int, seed: int = 0) -> np.ndarray:
    """A fixed linear dynamics x[t+1] = A x[t]: an orthogonal map (norm-preserving, so trajectories stay bounded)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q.astype(np.float32)


def write_dynamics_dataset(dataset_dir: Path, name: str = "dynamics", rows: int = 64, steps: int = 6, d: int = 4,
                           seed: int = 1, varied: bool = False) -> str:
    """Trajectories of a linear dynamical system, one vector per day: `<m1>` ... `<m{steps}>`.

    With `varied`, rows differ in length, text and vectors per group, to exercise padding and normalisation."""
    rng = np.random.default_rng(seed)
    a = rotation_matrix(d)
    data = []
    for row in range(rows):
        n_steps = int(rng.integers(2, steps + 1)) if varied else steps
        x = rng.normal(size=d).astype(np.float32)
        files = {}
        for t in range(n_steps):
            per_group = int(rng.integers(1, 3)) if varied else 1
            vectors = []
            for _ in range(per_group):
                vectors.append(x)
                x = a @ x
            files[f"m{t + 1}"] = [write_embedding(dataset_dir / name / f"r{row}_t{t}.json", vectors)]
        split = max(1, n_steps // 2)
        user = "Days so far: " + "".join(f"<m{t + 1}>" for t in range(split))
        words = " and then" * int(rng.integers(0, 4)) if varied else ""
        assistant = f"Next{words}: " + "".join(f"<m{t + 1}>" for t in range(split, n_steps))
        data.append({
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
            "embeddings": {k: [os.path.relpath(v[0], dataset_dir)] for k, v in files.items()},
        })
    return write_dataset(dataset_dir, name, data)


def write_controlled_dataset(dataset_dir: Path, name: str = "control", rows: int = 24, steps: int = 5,
                             state_dim: int = 2, action_dim: int = 3, seed: int = 2) -> str:
    """A controlled linear system: state s (`state_dim`) and action a (`action_dim`) alternate in one message,
    `<s1><a1><s2><a2>...<s{steps}>`, with s_{t+1} = A s_t + B a_t and random actions (.npy files)."""
    rng = np.random.default_rng(seed)
    a_matrix = 0.9 * rotation_matrix(state_dim)
    b_matrix = rng.normal(size=(state_dim, action_dim)) * 0.5
    (dataset_dir / name).mkdir(parents=True, exist_ok=True)
    data = []
    for row in range(rows):
        s = rng.normal(size=state_dim)
        files, text = {}, ""
        for t in range(steps):
            path = f"{name}/r{row}_s{t}.npy"
            np.save(dataset_dir / path, s.astype(np.float32)[None])
            files[f"s{t + 1}"], text = [path], text + f"<s{t + 1}>"
            if t < steps - 1:
                action = rng.normal(size=action_dim)
                path = f"{name}/r{row}_a{t}.npy"
                np.save(dataset_dir / path, action.astype(np.float32)[None])
                files[f"a{t + 1}"], text = [path], text + f"<a{t + 1}>"
                s = a_matrix @ s + b_matrix @ action
        data.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}],
                     "embeddings": files})
    return write_dataset(dataset_dir, name, data)


def train_args(output_dir, dataset_dir, dataset="dynamics", **overrides) -> dict:
    args = {
        "stage": "wm", "model_name_or_path": TINY_MODEL, "dataset": dataset, "dataset_dir": str(dataset_dir),
        "output_dir": str(output_dir), "overwrite_output_dir": True, "per_device_train_batch_size": 4,
        "learning_rate": 1e-3, "max_steps": 3, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "disable_tqdm": True, "seed": 0,
        # Hugging Face's and LLaMA-Factory's values, written out: the stage wm defaults (parser.WM_DEFAULTS) have
        # tests of their own
        "lr_scheduler_type": "linear", "warmup_steps": 0, "lora_rank": 8, "unroll_steps": 1,
    }
    args.update(overrides)
    return args


def tiny_world_model(embedding_dim: int = 4, finetuning_type: str = "full", **world_model_keys):
    """A new world model around the tiny LLM, set up for training as a `stage: wm` run would set it up."""
    from wmfactory.hparams import FinetuningArguments, ModelArguments, WorldModelArguments
    from wmfactory.model import build_world_model, setup_finetuning

    model_args = ModelArguments(model_name_or_path=TINY_MODEL)
    finetuning = {k: world_model_keys.pop(k) for k in list(world_model_keys) if k.startswith(("freeze_", "lora_"))}
    model = build_world_model(model_args, WorldModelArguments(**world_model_keys), embedding_dim, finetuning_type)
    return setup_finetuning(model, model_args, FinetuningArguments(stage="wm", finetuning_type=finetuning_type,
                                                                   **finetuning))


@pytest.fixture(scope="session")
def action_model(tmp_path_factory):
    """A world model with an action stream (the engine and planning tests): a state s (2) and an action a (3)
    alternate, `<s1><a1>...<s5>`, a controlled linear system. (model, the first row, dataset_dir)."""
    from wmfactory import WorldModel
    from wmfactory.train.tuner import run_exp

    tmp = tmp_path_factory.mktemp("action_model")
    data_dir = write_controlled_dataset(tmp / "data")
    run_exp(train_args(tmp / "out", data_dir, dataset="control", condition_streams="a", max_steps=6,
                       learning_rate=5e-3, embedding_norm="standard", lm_loss_weight=0))
    rows = json.loads((tmp / "data" / "control.json").read_text())
    return WorldModel.from_pretrained(str(tmp / "out")), rows[0], str(tmp / "data")


HOLD_LOCK = """
import sys, time
from wmfactory.train.lock import output_dir_lock
with output_dir_lock(sys.argv[1], command=sys.argv[2], lock_path=sys.argv[3] or None):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_lock(folder, command: str = "predict run", lock_path=None):
    """A process that holds the output-folder lock of `folder` (as `command` would) until it is killed."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), command, str(lock_path or "")],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline().strip() == "held"
    return holder
