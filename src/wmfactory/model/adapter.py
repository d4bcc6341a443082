"""What is trained: `lora` (PEFT adapters), `freeze` (the last LLM layers) or `full`. The projector and prediction
head are always trained (the head is frozen in `stage: sft`, where it is unused).

LoRA wraps the whole world model in a PEFT model, as for any composite Hugging Face model: the adapters go into
the language model's linear layers, and the projector, head and statistics are `modules_to_save` (trained in full
and saved with the adapter). Saving, resuming and loading the best checkpoint are then PEFT's and the Trainer's."""

import os
import re

from torch import nn
from transformers.pytorch_utils import Conv1D

from ..extras.errors import ConfigError
from ..extras.logging import get_logger
from ..hparams import FinetuningArguments, ModelArguments
from .legacy import is_legacy_folder, load_adapter
from .world_model import WORLD_MODEL_PARTS, WorldModel, quiet_loading

logger = get_logger(__name__)


def setup_finetuning(model: WorldModel, model_args: ModelArguments, finetuning_args: FinetuningArguments) -> nn.Module:
    """Marks what trains and returns the model to train: `model` itself, or a PEFT model around it."""
    kind = finetuning_args.finetuning_type
    if kind == "full":
        model.requires_grad_(True)
    elif kind == "freeze":
        _freeze(model.language_model, finetuning_args)
        for part in WORLD_MODEL_PARTS:
            getattr(model, part).requires_grad_(True)
    elif model_args.adapter_name_or_path:
        if is_legacy_folder(model_args.adapter_name_or_path):
            raise ConfigError(f"`adapter_name_or_path`: '{model_args.adapter_name_or_path}' was written by wmfactory "
                              "0.1, whose LoRA layout cannot be trained further; `WorldModel.from_pretrained` and "
                              "`wmfactory predict/eval/export` load it (converted), or train a new adapter.")
        logger.info(f"Loading adapter {model_args.adapter_name_or_path}")
        try:
            with quiet_loading():
                model = load_adapter(model, model_args.adapter_name_or_path, is_trainable=True)
        except (OSError, ValueError) as err:  # no such folder, nor such adapter on the hub (or offline)
            path = model_args.adapter_name_or_path
            kind = "a folder without adapter_config.json" if os.path.isdir(path) else "not a folder (nor an " \
                "adapter the hub gives)"
            raise ConfigError(f"`adapter_name_or_path` '{path}' is {kind}: name a LoRA adapter folder that "
                              f"wmfactory or PEFT saved ({str(err).strip().splitlines()[0][:200]}).") from None
    else:
        model = _new_lora(model, finetuning_args)
    world_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not world_model.config.predicts_embeddings:  # stage sft: the head is neither run nor trained
        world_model.prediction_head.requires_grad_(False)
    lm = world_model.language_model
    output_embeddings = lm.get_output_embeddings()
    if world_model.config.lm_loss_weight == 0 and output_embeddings is not None and (
        output_embeddings.weight is not lm.get_input_embeddings().weight
    ):
        # the LM head is never run: frozen, so that distributed training sees no trainable parameter unused
        output_embeddings.requires_grad_(False)
    # under DeepSpeed ZeRO-3 a partitioned parameter is empty here; `ds_numel` is its full size
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
    total = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    logger.info(f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.4f}%)")
    return model


def lora_target_modules(language_model: nn.Module, lora_target: str) -> str:
    """A regular expression for PEFT's `target_modules`: the linear layers of the language model named in
    `lora_target` (`all`: every linear layer but the LM head), never the projector or the head."""
    output_layer = language_model.get_output_embeddings()
    found = {name.rsplit(".", 1)[-1] for name, module in language_model.named_modules()
             if isinstance(module, (nn.Linear, Conv1D)) and module is not output_layer}
    wanted = found if lora_target == "all" else {name.strip() for name in lora_target.split(",") if name.strip()}
    missing = wanted - found
    if missing:
        raise ConfigError(f"`lora_target`: no linear layer named {sorted(missing)} in this model "
                         f"(it has {sorted(found)}).")
    return rf"language_model\..*\.({'|'.join(re.escape(name) for name in sorted(wanted))})"


def _new_lora(model: WorldModel, finetuning_args: FinetuningArguments) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=finetuning_args.lora_rank,
        lora_alpha=finetuning_args.lora_alpha,
        lora_dropout=finetuning_args.lora_dropout,
        target_modules=lora_target_modules(model.language_model, finetuning_args.lora_target),
        modules_to_save=model.part_names(),
    )
    with quiet_loading():
        return get_peft_model(model, config)


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of decoder layers: the ModuleList with `num_hidden_layers` entries."""
    count = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"Cannot find the {count} decoder layers of this model for `finetuning_type: freeze`.")


def _freeze(model: nn.Module, finetuning_args: FinetuningArguments) -> None:
    model.requires_grad_(False)
    n = finetuning_args.freeze_trainable_layers
    if n == 0:
        return
    layers = _decoder_layers(model)
    if abs(n) > len(layers):
        raise ConfigError(f"`freeze_trainable_layers` is {n} but the model has {len(layers)} layers.")
    chosen = range(len(layers) - n, len(layers)) if n > 0 else range(-n)
    modules = finetuning_args.freeze_trainable_modules
    names = None if modules == "all" else {m.strip() for m in modules.split(",") if m.strip()}
    if names is not None:
        found = {part for index in chosen for name, _ in layers[index].named_parameters() for part in name.split(".")
                 if not part.isdigit() and part not in ("weight", "bias")}
        if not names or names - found:
            raise ConfigError(f"`freeze_trainable_modules`: no module named {sorted(names - found)} in the trainable "
                              f"layers (they have {sorted(found)}; or `all`).")
    for index in chosen:
        for name, parameter in layers[index].named_parameters():
            if names is None or any(part in names for part in name.split(".")):
                parameter.requires_grad_(True)
