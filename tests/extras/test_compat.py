"""What `wmfactory.extras.compat` relies on in the installed transformers: each test fails when a release changes
it, so that the change is found here."""

import inspect

import pytest
import warnings

import torch
import transformers
from conftest import TINY_MODEL
from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainingArguments, Wav2Vec2Config, Wav2Vec2Model

from wmfactory.extras import compat


def test_the_decoder_takes_its_cache_under_the_name_we_pass():
    decoder = AutoModelForCausalLM.from_pretrained(TINY_MODEL).get_decoder()
    name = compat.cache_argument(decoder)
    assert name in inspect.signature(decoder.forward).parameters
    out = decoder(inputs_embeds=torch.zeros((1, 2, decoder.config.hidden_size)), use_cache=True)
    cache = out.past_key_values
    again = decoder(inputs_embeds=torch.zeros((1, 1, decoder.config.hidden_size)), use_cache=True, **{name: cache})
    assert again.past_key_values.get_seq_length() == 3  # the cache was read and extended, not ignored


def test_the_commit_a_download_resolved_to_is_found_where_we_look():
    config = AutoConfig.from_pretrained(TINY_MODEL)
    assert compat.resolved_commit(config) is None  # a local folder has none
    import transformers.utils.hub as hub

    # transformers up to 5.2x kept the commit on the config; later releases resolve it once per load instead
    # (`utils.hub.resolve_revision`) and no longer keep it: then `encode` records only the revision asked for
    assert hasattr(config, "_commit_hash") or hasattr(hub, "resolve_revision")


def test_audio_models_map_samples_to_frames():
    model = Wav2Vec2Model(Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3),
                                         conv_stride=(5, 2)))
    assert compat.has_frame_lengths(model)
    # two convolutions: (16000 - 10) // 5 + 1 = 3199 frames, then (3199 - 3) // 2 + 1 = 1599
    assert int(compat.frame_lengths(model, torch.tensor([16000]))[0]) == 1599


def test_the_trainer_prepares_inputs_as_the_world_model_trainer_expects(tmp_path):
    model = torch.nn.Linear(2, 2)
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    prepared = compat.prepare_inputs(trainer, {"x": torch.ones(2), "n": 3})
    assert prepared["x"].device == trainer.args.device and prepared["n"] == 3


def test_a_key_mapping_used_on_load_is_kept_where_we_forget_it(tmp_path):
    from safetensors import safe_open

    renaming = {r"^model\.norm\.": "model.norm."}  # matches a weight, renames it to itself
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL, key_mapping=renaming)
    kept = [set(c._original_source_patterns) for c in model._weight_conversions]
    assert set(renaming) in kept
    compat.forget_key_mapping(model, renaming)
    assert set(renaming) not in [set(c._original_source_patterns) for c in model._weight_conversions]
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as weights:
        assert "model.norm.weight" in weights.keys()


def test_automodel_private_keys_start_with_an_underscore():
    kwargs = compat.base_model_kwargs({"dtype": "float32", "adapter_kwargs": {}, "_from_auto": True})
    assert kwargs == {"dtype": "float32"}
    source = inspect.getsource(transformers.models.auto.auto_factory)
    assert "_from_auto" in source and "adapter_kwargs" in source


def test_the_gradient_checkpointing_warning_still_reads_as_we_filter_it():
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL)
    if not hasattr(type(model), "is_activation_checkpointing"):  # the old name is current: nothing to filter
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.is_gradient_checkpointing
    assert any(compat.GRADIENT_CHECKPOINTING_WARNING in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with compat.quiet_gradient_checkpointing_warning():
            model.is_gradient_checkpointing
    assert not caught


def test_swanlab_callback_holds_the_module_it_asks_for_a_run():
    swanlab = pytest.importorskip("swanlab")
    from wmfactory.extras.compat import swanlab_callback

    callback = swanlab_callback()
    assert callback._swanlab._module is swanlab  # transformers' SwanLabCallback keeps the module as `_swanlab`
    assert callback._swanlab.get_run() is None  # no run started: None, whichever swanlab release raises here


@pytest.mark.parametrize("model_type,post_processing", [
    ("gemma2", {"final_logit_softcapping": 0.05}),  # tanh(x / c) * c, with c small enough to bend every logit
    ("granite", {"logits_scaling": 8.0}),  # divides
    ("cohere", {"logit_scale": 0.25}),  # multiplies
    ("llama", {}),
])
def test_the_world_models_lm_logits_are_the_language_models_own(model_type, post_processing):
    """`lm_logits` on the decoder's hidden states gives the logits of the causal LM's own forward, whatever its class
    applies after the output head (random weights built from a config, nothing downloaded)."""
    from wmfactory.model import WorldModel
    from wmfactory.model.config import WorldModelConfig

    text = AutoConfig.for_model(model_type, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=100,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2, **post_processing)
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(text_config=text, streams={"m": 4}, embedding_dim=4)).eval()
    ids = torch.randint(3, 100, (2, 7))
    with torch.no_grad():
        own = model.language_model(input_ids=ids).logits
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state
        ours = model.lm_logits(hidden.flatten(0, 1)).view(2, 7, -1)
    torch.testing.assert_close(ours, own.float(), rtol=1e-5, atol=1e-6)
    raw = model.language_model.get_output_embeddings()(hidden)
    if post_processing:  # the test would pass without the post-processing otherwise
        assert (raw - own).abs().max() > 1e-3
