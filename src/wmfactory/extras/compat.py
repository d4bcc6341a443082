"""The library API that wmfactory needs and that has no public form, in one place. Each function says what it
relies on; `tests/extras/test_compat.py` fails when the installed transformers changes it, so that a new release
breaks one test here instead of a run somewhere else."""

import contextlib
import functools
import inspect
import warnings
from typing import Any, Optional

import torch

# transformers 5 warns when PEFT reads `model.is_gradient_checkpointing` (renamed `is_activation_checkpointing`);
# the warning says nothing a wmfactory user can act on
GRADIENT_CHECKPOINTING_WARNING = "`is_gradient_checkpointing` is deprecated"


def cache_argument(decoder) -> str:
    """The name under which `decoder.forward` takes its KV cache: `past_key_values`, or `cache` in the releases that
    renamed it (read once per decoder class: a signature costs more than a tiny model's step)."""
    return _cache_argument_of(type(decoder))


@functools.cache
def _cache_argument_of(decoder_class: type) -> str:
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


def resolved_commit(config) -> Optional[str]:
    """The hub commit a `from_pretrained` download resolved to (`config._commit_hash`; None for a local folder)."""
    return getattr(config, "_commit_hash", None)


def has_frame_lengths(model) -> bool:
    """Whether an audio model maps sample counts to frame counts (wav2vec2, HuBERT, WavLM)."""
    return hasattr(model, "_get_feat_extract_output_lengths")


def frame_lengths(model, sample_lengths):
    """Frames per item of an audio model for inputs of `sample_lengths` samples (`_get_feat_extract_output_lengths`)."""
    return model._get_feat_extract_output_lengths(sample_lengths)


class _Passthrough(torch.nn.Module):
    """A decoder that returns its input embeddings as its last hidden states."""

    def forward(self, inputs_embeds=None, **unused):
        from transformers.modeling_outputs import BaseModelOutputWithPast

        return BaseModelOutputWithPast(last_hidden_state=inputs_embeds)


def lm_head_logits(language_model, hidden):
    """The logits `[n, vocab]` that `language_model` (a transformers causal LM) gives for its decoder's last hidden
    states `hidden` `[n, h]`, through its own forward: the output head and whatever the class applies after it
    (Cohere's `logit_scale`, Gemma's `final_logit_softcapping`, Granite's `logits_scaling`, ...). The forward runs on
    a shallow copy of the model whose decoder (the submodule under `base_model_prefix`) passes its input through.
    Relies on the causal LM computing its logits from `self.<base_model_prefix>(...).last_hidden_state` with
    `logits_to_keep=0` keeping every position, and on `nn.Module._modules` holding the submodules."""
    head = object.__new__(type(language_model))
    head.__dict__.update(language_model.__dict__)
    head.__dict__["_modules"] = {**language_model._modules, language_model.base_model_prefix: _PASSTHROUGH}
    return head(inputs_embeds=hidden[None], use_cache=False, logits_to_keep=0).logits[0]


_PASSTHROUGH = _Passthrough()


def prepare_inputs(trainer, inputs: dict[str, Any]) -> dict[str, Any]:
    """A batch moved to the trainer's device as `Trainer` itself prepares it (`Trainer._prepare_inputs`)."""
    return trainer._prepare_inputs(inputs)


def forget_key_mapping(model, key_mapping: dict[str, str]) -> None:
    """transformers keeps the renamings of `from_pretrained(key_mapping=...)` that matched a weight
    (`model._weight_conversions`) and reverts them in `save_pretrained`, to save the keys the model was loaded from:
    drop those of `key_mapping`, so that the model saves its own keys."""
    kept = getattr(model, "_weight_conversions", None)
    if kept:
        model._weight_conversions = [
            conversion for conversion in kept
            if not set(getattr(conversion, "_original_source_patterns", ())) & set(key_mapping)]


def base_model_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The `from_pretrained` keys that `AutoModel` passed for the world model, less the ones that are AutoModel's
    own (`adapter_kwargs` and the private `_...` keys): they do not apply to the base model under an adapter."""
    return {k: v for k, v in kwargs.items() if k != "adapter_kwargs" and not k.startswith("_")}


@contextlib.contextmanager
def quiet_gradient_checkpointing_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=GRADIENT_CHECKPOINTING_WARNING, category=FutureWarning)
        yield


class _SwanLabWithoutRunIsNone:
    """The swanlab module, except that `get_run()` before `swanlab.init` answers None (swanlab < 0.8) instead of
    raising RuntimeError (0.8 and later)."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def get_run(self):
        try:
            return self._module.get_run()
        except RuntimeError:
            return None


def swanlab_callback():
    """transformers' `SwanLabCallback`, able to start its run with every swanlab release. Its `setup` starts a run
    only where `swanlab.get_run()` is None, which swanlab 0.8 and later raise instead of returning; the callback
    holds the module as `_swanlab`, which is wrapped here."""
    from transformers.integrations import SwanLabCallback

    callback = SwanLabCallback()
    callback._swanlab = _SwanLabWithoutRunIsNone(callback._swanlab)
    return callback
