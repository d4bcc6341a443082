"""`wmfactory train | check | predict | eval | export | version`."""

import os
import sys
from typing import Callable

USAGE = """usage: wmfactory <command> [CONFIG.yaml] [key=value ...]   (or --key value ...)

commands:
  train     train a world model (stage sft or wm) from a LLaMA-Factory-style YAML file or flags
  check     read every row and embedding file of the datasets: summary and every problem (exit 1 if any)
  predict   write predictions.jsonl and predicted_embeddings/ for a dataset (teacher_forced or rollout)
  eval      score teacher-forced and rollout predictions against persistence, linear extrapolation
            and the training mean: eval_results.json, a table, eval_horizon.png, eval_trajectories.png
  export    merge a LoRA adapter into the base weights (export_dir)
  version   print the version

`wmfactory <command> --help` lists every key with its default.
"""


def guarded(run: Callable[[list[str]], object], argv: list[str]) -> int:
    """Runs a command; bad configuration or data ends with one line on stderr and exit status 1; anything else
    is a bug and keeps its traceback."""
    from .extras.errors import DataError

    if "-h" in argv or "--help" in argv:
        from .train.tuner import print_help

        print_help()
        return 0
    try:
        result = run(argv)
    except DataError as err:
        print(f"wmfactory: error: {err}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


TORCHRUN_VARIABLES = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


def wants_torchrun() -> bool:
    """LLaMA-Factory's convention: `FORCE_TORCHRUN=1`, or any torchrun variable set, or several GPUs; never when
    already running under torchrun."""
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return False
    if os.environ.get("FORCE_TORCHRUN", "0").lower() in ("1", "true", "yes"):
        return True
    if any(name in os.environ for name in TORCHRUN_VARIABLES):
        return True
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() > 1


def launch_torchrun(args: list[str]) -> int:
    """Re-run `wmfactory train ARGS` as `torchrun ... -m wmfactory.train.tuner ARGS`; returns its exit status."""
    import random
    import subprocess

    nproc = os.environ.get("NPROC_PER_NODE")
    if nproc is None:
        import torch

        nproc = str(max(torch.cuda.device_count(), 1))
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", os.environ.get("NNODES", "1"),
        "--node_rank", os.environ.get("NODE_RANK", "0"),
        "--nproc_per_node", nproc,
        "--master_addr", os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "--master_port", os.environ.get("MASTER_PORT", str(random.randint(20001, 29999))),
        "-m", "wmfactory.train.tuner", *args,
    ]
    print("wmfactory: launching " + " ".join(command[1:]), file=sys.stderr)
    return subprocess.run(command).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "version":
        from . import __version__

        print(f"wmfactory {__version__}")
        return 0
    if command == "train":
        if wants_torchrun():
            return launch_torchrun(rest)
        from .train.tuner import run_exp

        return guarded(run_exp, rest)
    if command == "check":
        from .data.check import run_check

        return guarded(run_check, rest)
    if command in ("predict", "eval", "export"):
        from .inference.workflow import run_command

        return guarded(lambda args: run_command(command, args), rest)
    print(f"wmfactory: unknown command '{command}'.\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
