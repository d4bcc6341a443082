"""Folders written by wmfactory 0.1 (`world_model_config.json` + `world_model.safetensors` beside the LLM's own
files) still load, converted on load, and predict what the world model they hold predicts. The folder is written by
hand in the layout 0.1 wrote (its `WorldModelConfig` dataclass as JSON, `nn.Sequential` projector and head, the
statistics buffers of then), and the reference prediction is 0.1's forward computed here by hand."""

import json

import pytest
import torch
from conftest import TINY_MODEL
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from wmfactory.model import WorldModel

BATCH = {
    "input_ids": torch.tensor([[5, 6, 2, 2, 7, 8]]),
    "labels": torch.tensor([[-100, -100, -100, -100, 7, 8]]),
    "embedding_vectors": torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, -0.1, 0.0, 0.2]]),
    "embedding_positions": torch.tensor([[0, 2], [0, 3]]),
    "embedding_is_target": torch.tensor([False, True]),
}
D, H = 4, 64  # the vectors' and the tiny LLM's widths


def write_legacy_folder(path, lora: bool) -> tuple[dict, torch.nn.Module]:
    """The 0.1 layout: the LM's files (full weights, or a LoRA adapter on the LM alone), `world_model.safetensors`
    with 0.1's keys (`projector.{0,2}`, `prediction_head.{0,2}`: `nn.Sequential(Linear, GELU, Linear)`, and
    `statistics.{mean,std,center,scale,low,high,delta_scale,ridge}`) and `world_model_config.json` (0.1's
    `WorldModelConfig`, `predict_residual` a boolean). Returns (the world-model tensors, the LM they go with)."""
    lm = AutoModelForCausalLM.from_pretrained(TINY_MODEL)
    if lora:
        from peft import LoraConfig, get_peft_model

        peft = get_peft_model(lm, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        with torch.no_grad():
            for name, parameter in peft.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.1)  # a trained adapter is not the identity
        peft.save_pretrained(path)
        lm = peft.merge_and_unload()
    else:
        lm.save_pretrained(path)
    AutoTokenizer.from_pretrained(TINY_MODEL).save_pretrained(path)
    g = torch.Generator().manual_seed(0)
    state = {"projector.0.weight": torch.randn(H, D, generator=g) * 0.3, "projector.0.bias": torch.randn(H, generator=g),
             "projector.2.weight": torch.randn(H, H, generator=g) * 0.1, "projector.2.bias": torch.zeros(H),
             "prediction_head.0.weight": torch.randn(H, H, generator=g) * 0.1,
             "prediction_head.0.bias": torch.randn(H, generator=g) * 0.1,
             "prediction_head.2.weight": torch.randn(D, H, generator=g) * 0.1,
             "prediction_head.2.bias": torch.randn(D, generator=g) * 0.1,
             "statistics.mean": torch.zeros(D), "statistics.std": torch.ones(D), "statistics.center": torch.zeros(D),
             "statistics.scale": torch.ones(D), "statistics.low": torch.full((D,), -torch.inf),
             "statistics.high": torch.full((D,), torch.inf), "statistics.delta_scale": torch.full((D,), 0.5),
             "statistics.ridge": torch.zeros(2 * D + 1, D)}
    save_file(state, str(path / "world_model.safetensors"), metadata={"format": "pt"})
    config = {"embedding_dim": D, "hidden_size": H, "projector_type": "mlp", "prediction_head_type": "mlp",
              "embedding_loss_weight": 1.0, "lm_loss_weight": 0.5, "world_model_loss_type": "l2",
              "embedding_targets": "next", "embedding_norm": "none", "predict_residual": True,
              "embedding_noise_std": 0.0, "scheduled_sampling_prob": 0.0, "ridge_history": 2,
              "base_model_name_or_path": TINY_MODEL, "finetuning_type": "lora" if lora else "full", "template": None,
              "wmfactory_version": "0.1.0", "extra": {}}
    (path / "world_model_config.json").write_text(json.dumps(config, indent=2))
    return state, lm


def forward_of_0_1(state: dict, lm) -> tuple[torch.Tensor, torch.Tensor]:
    """0.1's forward on BATCH, by hand: projected vectors replace the token embeddings at their slots; the head
    reads the hidden state one position before the target and predicts the step from the previous vector in units
    of `delta_scale` (`embedding_norm: none`: data units throughout). Returns (predicted `[1, d]`, LM loss)."""
    def mlp(prefix, x):
        x = torch.nn.functional.gelu(x @ state[f"{prefix}.0.weight"].T + state[f"{prefix}.0.bias"])
        return x @ state[f"{prefix}.2.weight"].T + state[f"{prefix}.2.bias"]

    vectors = BATCH["embedding_vectors"]
    embeds = lm.get_input_embeddings()(BATCH["input_ids"]).clone()
    embeds[0, 2], embeds[0, 3] = mlp("projector", vectors[0]), mlp("projector", vectors[1])
    out = lm(inputs_embeds=embeds, labels=BATCH["labels"], output_hidden_states=True)
    hidden = out.hidden_states[-1][0, 2]  # the last layer, after the final norm
    predicted = vectors[0] + mlp("prediction_head", hidden) * state["statistics.delta_scale"]
    return predicted[None], out.loss


@pytest.mark.parametrize("lora", [False, True])
def test_a_0_1_folder_loads_and_predicts_the_same(tmp_path, lora):
    state, lm = write_legacy_folder(tmp_path, lora)
    reloaded = WorldModel.from_pretrained(str(tmp_path))
    with torch.no_grad():
        expected, expected_lm_loss = forward_of_0_1(state, lm.eval())
        got = reloaded(**BATCH)
    torch.testing.assert_close(got.predicted_embeddings, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.lm_loss, expected_lm_loss, rtol=0, atol=1e-5)
    torch.testing.assert_close(reloaded.statistics.m.delta_scale, torch.full((4,), 0.5))
    # and it saves in the current format, which loads without conversion
    reloaded.save_pretrained(tmp_path / "current")
    reloaded.tokenizer.save_pretrained(tmp_path / "current")
    again = WorldModel.from_pretrained(str(tmp_path / "current"))
    with torch.no_grad():
        torch.testing.assert_close(again(**BATCH).predicted_embeddings, expected, rtol=0, atol=1e-5)
