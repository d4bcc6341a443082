"""`wmfactory export`: one folder with the LoRA adapter merged into the base weights, loadable with no adapter."""

from typing import Any, Union

from ..extras.logging import get_logger
from ..hparams import get_export_args
from .common import load_trained_world_model

logger = get_logger(__name__)


def run_export(args: Union[dict[str, Any], list[str], None] = None) -> str:
    parsed = get_export_args(args)
    export_dir = parsed.inference.export_dir
    model = load_trained_world_model(parsed.model, "cpu")  # a LoRA adapter is merged on load
    model.config.finetuning_type = "full"
    model.config.base_model_name_or_path = None
    model.save_pretrained(export_dir)
    model.tokenizer.save_pretrained(export_dir)
    logger.info(f"Exported the world model to {export_dir}")
    return export_dir
