"""Entry point of a training run: `python -m wmfactory.train.tuner --stage wm ...` or `run_exp(dict_or_argv)`."""

import sys
from typing import Any, Optional, Union

from transformers import TrainerCallback

from ..extras.errors import DataError
from ..hparams import get_train_args
from .callbacks import LogCallback
from .sft.workflow import run_sft
from .wm.workflow import run_wm

STAGES = {"sft": run_sft, "wm": run_wm}


def run_exp(args: Union[dict[str, Any], list[str], None] = None, callbacks: Optional[list[TrainerCallback]] = None):
    model_args, data_args, training_args, finetuning_args = get_train_args(args)
    callbacks = [LogCallback()] + list(callbacks or [])
    return STAGES[finetuning_args.stage](model_args, data_args, training_args, finetuning_args, callbacks)


def print_help() -> None:
    """Every key with its default and help text, from the dataclasses (as argparse prints them)."""
    from transformers import HfArgumentParser

    from ..hparams.parser import TRAIN_DATACLASSES

    HfArgumentParser(TRAIN_DATACLASSES).print_help()


def main(argv: Optional[list[str]] = None) -> int:
    """Runs an experiment; bad configuration or data ends with one line on stderr and exit
    status 1; anything else is a bug and keeps its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return 0
    try:
        run_exp(argv)
    except DataError as err:
        print(f"wmfactory: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
