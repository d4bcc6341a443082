"""CPU threads and training speed: the same 40-step training run of the tiny model with torch's default number of
threads and with one thread, on an idle machine and beside a busy neighbour (one process per core spinning).

    python benchmarks/cpu_threads.py [--steps 40]

Each run is its own process (`OMP_NUM_THREADS` must be set before torch starts); its time is the Trainer's
`train_runtime` (the training loop, without start-up). Prints JSON."""

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def train_runtime(steps: int, threads: int | None, out: str) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    subprocess.run([sys.executable, "-m", "wmfactory.train.tuner", "--stage", "wm", "--model_name",
                    os.path.join(REPO, "examples", "models", "tiny-llama"), "--dataset", "wm_demo", "--dataset_dir",
                    os.path.join(REPO, "data"), "--output_dir", out, "--overwrite_output_dir", "--max_steps",
                    str(steps), "--per_device_train_batch_size", "2", "--save_strategy", "no", "--report_to", "none",
                    "--disable_tqdm", "--logging_steps", str(steps)], env=env, check=True, capture_output=True)
    with open(os.path.join(out, "train_results.json"), encoding="utf-8") as f:
        return json.load(f)["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "steps": args.steps, "seconds": {}}
    with tempfile.TemporaryDirectory() as work:
        for load in ("idle", "busy"):
            stop = multiprocessing.Event()
            spinners = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(os.cpu_count() or 1)]
            if load == "busy":
                for process in spinners:
                    process.start()
            try:
                for threads in (None, 1):
                    name = f"{load}, {'default threads' if threads is None else f'{threads} thread'}"
                    result["seconds"][name] = round(train_runtime(args.steps, threads, os.path.join(work, "o")), 2)
            finally:
                stop.set()
                for process in spinners:
                    if process.is_alive():
                        process.join()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
