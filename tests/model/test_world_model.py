"""The world model's forward pass, saving and reloading (LoRA, full, freeze)."""

import json
import os

import pytest
import torch
from transformers import AutoModel
from conftest import tiny_world_model, train_args, write_dynamics_dataset

from wmfactory.data import WorldModelDataCollator
from wmfactory.extras.errors import DataError
from wmfactory.model import WorldModel
from wmfactory.train.tuner import run_exp


def batch_with(d=4, targets=True):
    collator = WorldModelDataCollator(pad_token_id=2, embedding_dim=d)
    rows = [
        {"input_ids": [5, 6, 2, 2, 7, 8], "labels": [-100, -100, -100, -100, 7, 8], "embedding_positions": [2, 3],
         "embedding_vectors": [[0.1] * d, [0.2] * d], "embedding_is_target": [False, targets]},
        {"input_ids": [5, 2, 9], "labels": [-100, -100, 9], "embedding_positions": [1],
         "embedding_vectors": [[0.3] * d], "embedding_is_target": [targets]},
    ]
    return collator(rows)


def test_forward_matches_an_independent_computation():
    torch.manual_seed(0)
    model = tiny_world_model(lm_loss_weight=0.5, predict_residual=True)  # the frame the reference computes
    batch = batch_with()
    out = model(**batch)
    # recompute by hand: token embeddings, projector at the slots, decoder, head one position earlier
    lm = model.language_model
    embeds = lm.get_input_embeddings()(batch["input_ids"]).clone()
    for (row, pos), vector in zip(batch["embedding_positions"].tolist(), batch["embedding_vectors"]):
        embeds[row, pos] = model.projector.m(vector)
    hidden = lm.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
    # predict_residual (the default): the head gives the step from the previous vector of the row, in units of the
    # step scale (1 before statistics are fitted); row 1's only vector has no previous one, so it starts from 0
    vectors = batch["embedding_vectors"]
    predicted = torch.stack([vectors[0] + model.prediction_head.m(hidden[0, 2]), model.prediction_head.m(hidden[1, 0])])
    targets = torch.stack([batch["embedding_vectors"][1], batch["embedding_vectors"][2]])
    expected_emb = ((predicted - targets) ** 2).mean(dim=-1).mean()
    logits = lm.lm_head(hidden)
    ce = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 3], logits[0, 4], logits[1, 1]]), torch.tensor([7, 8, 9]), reduction="mean"
    )
    torch.testing.assert_close(out.embedding_loss, expected_emb)
    torch.testing.assert_close(out.lm_loss, ce)
    torch.testing.assert_close(out.loss, expected_emb + 0.5 * ce)
    torch.testing.assert_close(out.predicted_embeddings, predicted)


def test_batch_without_targets_gives_zero_embedding_loss_and_keeps_the_head_in_the_graph():
    model = tiny_world_model()
    out = model(**batch_with(targets=False))
    assert out.embedding_loss.item() == 0.0 and not torch.isnan(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.prediction_head.parameters())
    assert all(p.grad is not None for p in model.projector.parameters())


def test_lm_head_is_not_run_when_its_weight_is_zero():
    model = tiny_world_model(lm_loss_weight=0.0)
    calls = []
    model.language_model.get_output_embeddings().register_forward_hook(lambda *args: calls.append(1))
    out = model(**batch_with())
    assert calls == [] and out.lm_loss.item() == 0.0 and out.embedding_loss.item() > 0


def test_freeze_trains_the_last_layers_only():
    model = tiny_world_model(finetuning_type="freeze", freeze_trainable_layers=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".layers.1." in n for n in trainable)
    assert not any(".layers.0." in n or "embed_tokens" in n or "lm_head" in n for n in trainable)
    assert {n.split(".")[0] for n in trainable} == {"language_model", "projector", "prediction_head"}
    head_only = tiny_world_model(finetuning_type="freeze", freeze_trainable_layers=0)
    assert {n.split(".")[0] for n, p in head_only.named_parameters() if p.requires_grad} == {
        "projector", "prediction_head"}


@pytest.mark.parametrize("finetuning_type", ["lora", "full"])
def test_output_folder_alone_reloads_the_same_world_model(tmp_path, finetuning_type):
    data_dir = write_dynamics_dataset(tmp_path / "data", rows=8)
    out = tmp_path / "out"
    trainer = run_exp(train_args(out, data_dir, finetuning_type=finetuning_type, max_steps=3, learning_rate=1e-2))
    files = set(os.listdir(out))
    assert {"config.json", "trainer_state.json", "trainer_log.jsonl", "tokenizer.json"} <= files
    assert ("adapter_model.safetensors" in files) == (finetuning_type == "lora")
    assert ("model.safetensors" in files) == (finetuning_type == "full")
    assert "world_model.safetensors" not in files  # the projector and head are in the model's own weights file
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "wmfactory_world_model" and config["embedding_dim"] == 4
    assert config["text_config"]["model_type"] == "llama"

    trained = trainer.model.cpu().eval()  # trained on the GPU where there is one
    reloaded = WorldModel.from_pretrained(str(out))
    batch = {k: v.cpu() for k, v in next(iter(trainer.get_train_dataloader())).items()}
    with torch.no_grad():
        expected, got = trained(**batch), reloaded(**batch)
    assert expected.predicted_embeddings.shape[0] > 0
    torch.testing.assert_close(got.predicted_embeddings, expected.predicted_embeddings, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.lm_loss, expected.lm_loss, rtol=0, atol=1e-6)
    auto = AutoModel.from_pretrained(str(out))  # registered with the Auto classes
    assert isinstance(auto, WorldModel)
    with torch.no_grad():
        torch.testing.assert_close(auto(**batch).predicted_embeddings, expected.predicted_embeddings, rtol=0,
                                   atol=1e-6)
    # and the training really changed the head: a fresh model predicts differently
    fresh = tiny_world_model(finetuning_type=finetuning_type)
    with torch.no_grad():
        assert not torch.allclose(fresh(**batch).predicted_embeddings, expected.predicted_embeddings)

    os.remove(out / "config.json")
    with pytest.raises(DataError, match="holds no config.json"):
        WorldModel.from_pretrained(str(out))


def test_lm_loss_is_the_cross_entropy_of_the_language_models_own_logits():
    """The LM loss reads the logits of the causal LM's own forward at the labelled positions (each class's
    softcapping and scaling: tests/extras/test_compat.py builds Gemma, Granite and Cohere models)."""
    model = tiny_world_model(lm_loss_weight=1.0)
    batch = batch_with()
    lm = model.language_model
    embeds = model.embed(batch["input_ids"], batch["embedding_vectors"], batch["embedding_positions"])
    logits = lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(torch.stack([logits[0, 3], logits[0, 4], logits[1, 1]]),
                                                 torch.tensor([7, 8, 9]))
    torch.testing.assert_close(model(**batch).lm_loss, expected)


def test_lora_trains_the_adapters_and_the_world_model_parts_and_sft_freezes_the_head():
    model = tiny_world_model(finetuning_type="lora")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in name or ".modules_to_save." in name for name in trainable)
    assert {tuple(name.split(".modules_to_save.")[0].split(".")[-2:]) for name in trainable
            if ".modules_to_save." in name} == {("projector", "m"), ("prediction_head", "m")}  # per stream
    assert not any("lora_" in name for name in trainable if ".language_model." not in name)  # never the head
    sft = tiny_world_model(finetuning_type="lora", embedding_loss_weight=0.0)
    assert not any("prediction_head" in name for name, p in sft.named_parameters() if p.requires_grad)


def test_finetuning_values_the_model_cannot_take_are_named():
    from wmfactory.extras.errors import ConfigError

    with pytest.raises(ConfigError, match=r"`lora_target`: no linear layer named \['qproj'\]"):
        tiny_world_model(finetuning_type="lora", lora_target="qproj")
    with pytest.raises(ConfigError, match="`freeze_trainable_layers` is 5 but the model has 2 layers"):
        tiny_world_model(finetuning_type="freeze", freeze_trainable_layers=5)
