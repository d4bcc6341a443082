"""What is trained: `lora` (PEFT adapters), `freeze` (the last LLM layers) or `full`. The projector and prediction
head are always trained (the head is frozen in `stage: sft`, where it is unused)."""

from torch import nn

from ..extras.logging import get_logger
from ..hparams import FinetuningArguments, ModelArguments

logger = get_logger(__name__)


def setup_finetuning(
    model: nn.Module, model_args: ModelArguments, finetuning_args: FinetuningArguments, is_trainable: bool
) -> nn.Module:
    """Returns the language model to wrap: `model` itself, or a PEFT model around it."""
    kind = finetuning_args.finetuning_type
    if not is_trainable:
        return _load_adapter(model, model_args, is_trainable=False) if model_args.adapter_name_or_path else model
    if kind == "full":
        model.requires_grad_(True)
        return model
    if kind == "freeze":
        _freeze(model, finetuning_args)
        return model
    if kind == "lora":
        if model_args.adapter_name_or_path:
            return _load_adapter(model, model_args, is_trainable=True)
        return _new_lora(model, finetuning_args)
    raise ValueError(f"Unknown finetuning_type '{kind}'.")


def _new_lora(model: nn.Module, finetuning_args: FinetuningArguments) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    target = finetuning_args.lora_target
    target_modules = "all-linear" if target == "all" else [name.strip() for name in target.split(",")]
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=finetuning_args.lora_rank,
        lora_alpha=finetuning_args.lora_alpha,
        lora_dropout=finetuning_args.lora_dropout,
        target_modules=target_modules,
    )
    return get_peft_model(model, config)


def _load_adapter(model: nn.Module, model_args: ModelArguments, is_trainable: bool) -> nn.Module:
    from peft import PeftModel

    logger.info(f"Loading adapter {model_args.adapter_name_or_path}")
    return PeftModel.from_pretrained(model, model_args.adapter_name_or_path, is_trainable=is_trainable)


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
    chosen = range(len(layers) - n, len(layers)) if n > 0 else range(-n)
    modules = finetuning_args.freeze_trainable_modules
    names = None if modules == "all" else {m.strip() for m in modules.split(",")}
    for index in chosen:
        for name, parameter in layers[index].named_parameters():
            if names is None or any(part in names for part in name.split(".")):
                parameter.requires_grad_(True)
