"""`wmfactory export`: one folder with the LoRA adapter merged into the base weights, loadable with no adapter.

The folder is written under a temporary name beside `export_dir` and renamed when complete (an old export is moved
aside first, then removed), so an interrupted export leaves the old folder, no folder or the new one, never half of
one; a full disk ends with one line and leaves nothing behind; an existing non-empty `export_dir` is replaced only with
`overwrite_output_dir: true`, and never when it is the model's own folder."""

import os
from typing import Any, Union

from ..extras.atomic import remove_partials, staged_folder
from ..extras.errors import ConfigError
from ..extras.logging import get_logger
from ..hparams import get_export_args
from ..train.lock import LOCK_FILE, output_dir_lock
from .common import load_trained_world_model

logger = get_logger(__name__)


def run_export(args: Union[dict[str, Any], list[str], None] = None) -> str:
    parsed = get_export_args(args)
    export_dir = os.path.abspath(parsed.inference.export_dir)
    sources = {os.path.realpath(p) for p in (parsed.model.model_name_or_path, parsed.model.adapter_name_or_path)
               if p and os.path.isdir(p)}
    if os.path.realpath(export_dir) in sources:
        raise ConfigError(f"`export_dir` '{export_dir}' is the model's own folder: export into another one.")
    if os.path.isfile(export_dir):
        raise ConfigError(f"`export_dir` '{export_dir}' is a file, not a folder.")
    if os.path.isdir(export_dir) and os.listdir(export_dir) and not parsed.overwrite:
        raise ConfigError(f"`export_dir` '{export_dir}' exists and is not empty: choose another folder, or set "
                          "`overwrite_output_dir: true` to replace it.")
    parent, name = os.path.split(export_dir)
    with output_dir_lock(export_dir, command="export", lock_path=os.path.join(parent, f".{name}{LOCK_FILE}")):
        remove_partials(parent, prefix=f".{name}")
        model = load_trained_world_model(parsed.model, "cpu")  # a LoRA adapter is merged on load
        model.config.finetuning_type = "full"
        model.config.base_model_name_or_path = None
        with staged_folder(export_dir) as partial:
            model.save_pretrained(partial)
            model.tokenizer.save_pretrained(partial)
    logger.info(f"Exported the world model to {export_dir}")
    return export_dir
