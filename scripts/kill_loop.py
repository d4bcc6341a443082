"""SIGKILL `wmfactory predict`, `eval` and `export` at random moments, and after each kill read the output folder back:
it must hold nothing, the previous complete output, or the new complete output.

    python scripts/kill_loop.py --kills 30                 # 30 kills of each command (about 3 minutes on 2 cores)
    python scripts/kill_loop.py --kills 5 --commands predict

Two outputs that differ (A and B: teacher-forced vs rollout predictions, 1 vs 2 context groups in eval, two trained
models for export): each run writes the one the folder does not hold, so that each check can tell old from new from
half. Each run is a
forked child of this process (the libraries are imported once); the kill lands uniformly in [0, 1.2 x] the time a
whole run takes. Prints one line per command and exits with 1 if any check failed."""

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import signal
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))
TINY_MODEL = os.path.join(REPO, "examples", "models", "tiny-llama")


def write_dataset(folder: str, rows: int = 6, steps: int = 5, d: int = 4) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "v"), exist_ok=True)
    data = []
    for row in range(rows):
        files = {}
        for t in range(steps):
            np.save(os.path.join(folder, "v", f"{row}_{t}.npy"), rng.normal(size=(1, d)).astype(np.float32))
            files[f"m{t + 1}"] = [f"v/{row}_{t}.npy"]
        told = "".join(f"<m{t + 1}>" for t in range(2))
        data.append({"messages": [{"role": "user", "content": told},
                                  {"role": "assistant", "content": "".join(f"<m{t + 1}>" for t in range(2, steps))}],
                     "embeddings": files})
    with open(os.path.join(folder, "d.json"), "w") as f:
        json.dump(data, f)
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    with open(os.path.join(folder, "dataset_info.json"), "w") as f:
        json.dump({"d": {"file_name": "d.json", "columns": {"messages": "messages", "embeddings": "embeddings"},
                         "tags": tags}}, f)


def train(folder: str, data: str, steps: int) -> str:
    from wmfactory.train.tuner import run_exp

    run_exp({"stage": "wm", "model_name_or_path": TINY_MODEL, "dataset": "d", "dataset_dir": data,
             "output_dir": folder, "finetuning_type": "full", "max_steps": steps, "per_device_train_batch_size": 2,
             "learning_rate": 1e-3, "save_strategy": "no", "report_to": "none", "disable_tqdm": True, "seed": 0,
             "ridge_history": 1})
    return folder


def predictions_of(folder: str):
    """What a reader of `folder` finds: None (no predictions.jsonl), or the records with their arrays' bytes."""
    from wmfactory.commands.predict import read_predictions

    path = os.path.join(folder, "predictions.jsonl")
    if not os.path.exists(path):
        return None
    return [(r["row"], r["key"], r["occurrence"], r["mode"], r["predicted"].tobytes(), r["target"].tobytes())
            for r in read_predictions(path)]


def eval_of(folder: str):
    path = os.path.join(folder, "eval_results.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def export_of(folder: str):
    """None when the folder is absent, else the sha256 of each file (and the model must load)."""
    if not os.path.isdir(folder):
        return None
    from wmfactory import WorldModel

    WorldModel.from_pretrained(folder)
    digests = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            digests[name] = hashlib.sha256(f.read()).hexdigest()
    return digests


def command_runs(command: str, work: str, data: str, models: tuple[str, str]):
    """(run(variant, output) -> None, read(output) -> state) of one command; variants 0 and 1 give different output."""
    from wmfactory.commands.evaluate import run_eval
    from wmfactory.commands.export import run_export
    from wmfactory.commands.predict import run_predict

    keys = {"model_name_or_path": models[0], "dataset": "d", "dataset_dir": data}
    if command == "predict":
        return (lambda v, out: run_predict({**keys, "output_dir": out,
                                            "predict_mode": ("teacher_forced", "rollout")[v]}), predictions_of)
    if command == "eval":
        return (lambda v, out: run_eval({**keys, "output_dir": out, "context_groups": 1 + v, "plot_rows": 1}),
                eval_of)
    return (lambda v, out: run_export({"model_name_or_path": models[v], "export_dir": out,
                                       "overwrite_output_dir": True}), export_of)


def forked(run, variant: int, output: str) -> int:
    """Run one command in a forked child (its output silenced); returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                run(variant, output)
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def kill_loop(command: str, kills: int, work: str, data: str, models: tuple[str, str], rng: random.Random) -> dict:
    run, read = command_runs(command, work, data, models)
    references = []
    for variant in (0, 1):
        reference = os.path.join(work, f"{command}-reference-{variant}")
        with contextlib.redirect_stdout(io.StringIO()):  # eval prints its table
            run(variant, reference)
        references.append(read(reference))
    assert references[0] != references[1], f"{command}: the two variants must differ"
    output = os.path.join(work, f"{command}-out")
    start = time.perf_counter()
    _, status = os.waitpid(forked(run, 0, output), 0)  # the previous complete output, and how long a run takes
    duration = time.perf_counter() - start
    assert status == 0 and read(output) == references[0], f"{command}: an unkilled run must write output A"
    found = {"nothing": 0, "A": 0, "B": 0, "bad": 0}
    failures = []
    state = references[0]
    for kill in range(kills):
        pid = forked(run, 1 if state == references[0] else 0, output)  # the output the folder does not hold yet
        time.sleep(rng.uniform(0, 1.2 * duration))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            state = read(output)
        except Exception as err:  # a half-written output that cannot even be read
            state, failures = "unreadable", failures + [f"kill {kill}: {type(err).__name__}: {err}"]
        if state is None:
            found["nothing"] += 1
        elif state == references[0]:
            found["A"] += 1
        elif state == references[1]:
            found["B"] += 1
        else:
            found["bad"] += 1
            if state != "unreadable":
                failures.append(f"kill {kill}: the output is neither A nor B")
    return {"command": command, "kills": kills, "run_seconds": round(duration, 2), "found": found,
            "failures": failures}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--commands", default="predict,eval,export")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import threading

    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    # tqdm's default lock is a multiprocessing semaphore, which forked children share: a child killed while it holds
    # it would block every later bar. Separate processes (the real CLI) share nothing; here a thread lock per process.
    tqdm.set_lock(threading.RLock())
    os.environ["TQDM_DISABLE"] = "1"
    rng = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "data")
        write_dataset(data)
        with contextlib.redirect_stdout(io.StringIO()):
            models = (train(os.path.join(work, "model-a"), data, 1), train(os.path.join(work, "model-b"), data, 2))
        for command in args.commands.split(","):
            result = kill_loop(command, args.kills, work, data, models, rng)
            results.append(result)
            print(json.dumps(result), flush=True)
    return 1 if any(r["found"]["bad"] or r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
