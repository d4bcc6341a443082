"""Folders written by wmfactory 0.1 (`world_model_config.json` + `world_model.safetensors` beside the LLM's own
files) still load, converted on load, and predict what the world model they hold predicts."""

import json

import pytest
import torch
from conftest import TINY_MODEL, tiny_world_model
from safetensors.torch import save_file
from transformers import AutoTokenizer

from wmfactory.model import WorldModel

BATCH = {
    "input_ids": torch.tensor([[5, 6, 2, 2, 7, 8]]),
    "labels": torch.tensor([[-100, -100, -100, -100, 7, 8]]),
    "embedding_vectors": torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, -0.1, 0.0, 0.2]]),
    "embedding_positions": torch.tensor([[0, 2], [0, 3]]),
    "embedding_is_target": torch.tensor([False, True]),
}


def write_legacy_folder(path, model: WorldModel, lora: bool) -> None:
    """The 0.1 layout, written by hand: the LM's files (full weights, or a LoRA adapter on the LM alone),
    `world_model.safetensors` with the 0.1 key names and `world_model_config.json`."""
    if lora:
        from peft import LoraConfig, get_peft_model

        lm = get_peft_model(model.language_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():
            for name, parameter in lm.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.1)  # a trained adapter is not the identity
        lm.save_pretrained(path)
        model.language_model = lm.merge_and_unload()  # what the reloaded folder must compute
    else:
        model.language_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(TINY_MODEL).save_pretrained(path)
    state = {key.replace("prediction_head.net.", "prediction_head."): value.contiguous()
             for key, value in model.state_dict().items() if not key.startswith("language_model.")}
    save_file(state, str(path / "world_model.safetensors"))
    config = {key: getattr(model.config, key) for key in (
        "embedding_dim", "projector_type", "prediction_head_type", "embedding_loss_weight", "lm_loss_weight",
        "world_model_loss_type", "embedding_targets", "embedding_norm", "predict_residual")}
    config.update(hidden_size=64, base_model_name_or_path=TINY_MODEL, finetuning_type="lora" if lora else "full",
                  template=None, wmfactory_version="0.1.0", extra={})
    (path / "world_model_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("lora", [False, True])
def test_a_0_1_folder_loads_and_predicts_the_same(tmp_path, lora):
    torch.manual_seed(0)
    model = tiny_world_model(lm_loss_weight=0.5)
    with torch.no_grad():
        model.statistics.delta_scale.fill_(0.5)  # fitted statistics travel with the head
    write_legacy_folder(tmp_path, model, lora)
    reloaded = WorldModel.from_pretrained(str(tmp_path))
    model.eval()
    with torch.no_grad():
        expected, got = model(**BATCH), reloaded(**BATCH)
    torch.testing.assert_close(got.predicted_embeddings, expected.predicted_embeddings, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.lm_loss, expected.lm_loss, rtol=0, atol=1e-5)
    torch.testing.assert_close(reloaded.statistics.delta_scale, torch.full((4,), 0.5))
    # and it saves in the current format, which loads without conversion
    reloaded.save_pretrained(tmp_path / "current")
    reloaded.tokenizer.save_pretrained(tmp_path / "current")
    again = WorldModel.from_pretrained(str(tmp_path / "current"))
    with torch.no_grad():
        torch.testing.assert_close(again(**BATCH).predicted_embeddings, expected.predicted_embeddings, rtol=0,
                                   atol=1e-5)
