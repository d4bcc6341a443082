"""`wmfactory train | check | predict | eval | export | version`."""

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
