"""Entry point of a training run: `python -m wmfactory.train.tuner --stage wm ...` or `run_exp(dict_or_argv)`."""

import sys
from typing import Any, Optional, Union

from transformers import TrainerCallback

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

    from ..hparams.parser import ALL_DATACLASSES

    HfArgumentParser(ALL_DATACLASSES).print_help()


def main(argv: Optional[list[str]] = None) -> int:
    from ..cli import guarded

    return guarded(run_exp, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
