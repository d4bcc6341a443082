"""Entry point of a training run: `python -m wmfactory.train.tuner --stage wm ...` or `run_exp(dict_or_argv)`."""

import errno
import os
import sys
from typing import Any, Optional, Union

from transformers import TrainerCallback, set_seed

from ..extras.atomic import as_os_error
from ..extras.errors import DataError, guarded
from ..hparams import get_train_args
from .callbacks import LogCallback
from .checkpoints import newest_complete_checkpoint, resolve_resume
from .lock import output_dir_lock
from .sft.workflow import run_sft
from .wm.workflow import run_wm

STAGES = {"sft": run_sft, "wm": run_wm}


def run_exp(args: Union[dict[str, Any], list[str], None] = None, callbacks: Optional[list[TrainerCallback]] = None):
    """Train with the keys of `args` (a dict, a YAML file with overrides, or flags); returns the trainer."""
    train_args = get_train_args(args)
    resolve_resume(train_args.training)
    set_seed(train_args.training.seed)  # before the model is built, so that the projector and head start the same
    callbacks = [LogCallback()] + list(callbacks or [])
    training = train_args.training
    try:
        with output_dir_lock(training.output_dir, is_main_process=training.process_index == 0):
            return STAGES[train_args.finetuning.stage](train_args, callbacks)
    except Exception as caught:  # an OSError, or safetensors' error around one
        err = as_os_error(caught)
        if err is None or not _cannot_write(err, training.output_dir):
            raise
        last = newest_complete_checkpoint(training.output_dir)
        raise DataError(f"cannot write '{err.filename or training.output_dir}': {err.strerror}. The checkpoints "
                        f"written before are intact (newest complete: {last or 'none'}); free space or fix the "
                        "permissions, then run the same command again to resume.") from None


def _cannot_write(err: OSError, output_dir: str) -> bool:
    """A full disk or quota, a read-only file system, a file size limit, or no permission on a file of `output_dir`."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):  # EFBIG: RLIMIT_FSIZE, a file too big
        return True
    inside = err.filename and os.path.abspath(str(err.filename)).startswith(os.path.abspath(output_dir))
    return err.errno in (errno.EACCES, errno.EPERM) and bool(inside)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        from ..hparams.parser import print_help

        print_help("train", "Train a world model (stage sft or wm): python -m wmfactory.train.tuner CONFIG.yaml "
                            "[key=value ...] or --key value ...")
        return 0
    return guarded(run_exp, argv)


if __name__ == "__main__":
    sys.exit(main())
