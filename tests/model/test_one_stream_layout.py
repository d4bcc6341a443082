"""One-stream folders saved before every world model held its projector, head and statistics per stream still load,
to the same weights and predictions.

The old layout, as wmfactory 0.2 wrote it for a model of one stream: bare modules, so the world-model keys of
`model.safetensors` were `projector.0.weight`, `prediction_head.net.0.weight`, `statistics.mean`, ... (now
`projector.m.0.weight`, ...), and a LoRA adapter had `modules_to_save: [projector, prediction_head, statistics]`
with keys `base_model.model.projector.0.weight`, ... (now `base_model.model.projector.m.0.weight`, with
`modules_to_save: [projector.m, prediction_head.m, statistics.m]`). The old folders are written here from a new
model by renaming its keys back to that layout (checked by hand against folders saved by the code before the
change), so that no binary folder is committed."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, tiny_world_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from wmfactory.model import WorldModel

PARTS = ("projector", "prediction_head", "statistics")
D = 4
# a row of stream `x`: a model of one stream (here `m`) reads any key as its stream
ROW = {"messages": [{"role": "user", "content": "Days: <x><x><x><x><x>"}, {"role": "assistant", "content": "ok"}],
       "embeddings": {"x": np.random.default_rng(0).normal(size=(5, D)).round(3).tolist()}}


def perturbed(model) -> None:
    """Every weight of the world model away from its initialisation (the head's last layer starts at zero), the
    LoRA layers' too, and statistics that are not the identity."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if any(part in name for part in PARTS) or "lora_B" in name:
                parameter.add_(torch.randn(parameter.shape, generator=g) * 0.1)
        for name, buffer in model.named_buffers():
            if name.endswith(("statistics.m.mean", "statistics.m.center")):
                buffer.copy_(torch.randn(buffer.shape, generator=g) * 0.5)
            elif name.endswith(("statistics.m.std", "statistics.m.scale")):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=g))


def old_key(key: str, prefix: str = "") -> str:
    """A key of the current layout -> the key the old layout gave the same tensor (`projector.m.0.weight` ->
    `projector.0.weight`)."""
    for part in PARTS:
        if key.startswith(f"{prefix}{part}.m."):
            return f"{prefix}{part}." + key[len(f"{prefix}{part}.m."):]
    return key


def to_old_layout(folder, weights: str, prefix: str = "") -> None:
    path = folder / weights
    state = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    renamed = {old_key(key, prefix): value for key, value in state.items()}
    assert renamed.keys() != state.keys()
    save_file(renamed, str(path), metadata=metadata)


def save_new_and_old(tmp_path, lora: bool):
    """(the folder in the current layout, the same model in the old layout)."""
    model = tiny_world_model(embedding_dim=D, finetuning_type="lora" if lora else "full")
    perturbed(model)
    new, old = tmp_path / "new", tmp_path / "old"
    for folder in (new, old):
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(TINY_MODEL).save_pretrained(folder)
        if lora:  # PEFT saves the adapter; training writes the world model's config.json beside it
            model.get_base_model().config.save_pretrained(folder)
    if lora:
        to_old_layout(old, "adapter_model.safetensors", prefix="base_model.model.")
        adapter = json.loads((old / "adapter_config.json").read_text())
        assert sorted(adapter["modules_to_save"]) == sorted(f"{part}.m" for part in PARTS)
        adapter["modules_to_save"] = list(PARTS)
        (old / "adapter_config.json").write_text(json.dumps(adapter))
    else:
        to_old_layout(old, "model.safetensors")
    return new, old


def predictions(model) -> list[np.ndarray]:
    groups = model.predict_next(ROW, num_samples=3, seed=0)
    return ([g.predicted for g in groups] + [g.samples for g in groups]
            + [model.rollout(ROW, 3), model.rollout(ROW, 2, num_samples=2, seed=1)])


@pytest.mark.parametrize("lora", [False, True])
def test_a_one_stream_folder_of_the_old_layout_loads_to_the_same_model(tmp_path, lora):
    new_folder, old_folder = save_new_and_old(tmp_path, lora)
    new, old = WorldModel.from_pretrained(str(new_folder)), WorldModel.from_pretrained(str(old_folder))
    expected = new.state_dict()
    got = old.state_dict()
    assert got.keys() == expected.keys() and any(key.startswith("projector.m.") for key in got)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    assert [g.stream for g in old.predict_next(ROW)] == ["x"] * 4  # the row's own stream name
    # the same weights, bit for bit; the float32 kernels may round differently on tensors loaded differently
    for a, b in zip(predictions(old), predictions(new), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # it saves in the current layout
    old.save_pretrained(tmp_path / "again")
    with safe_open(str(tmp_path / "again" / "model.safetensors"), framework="pt") as f:
        parts = {key for key in f.keys() if not key.startswith("language_model.")}
    assert parts == {key for key in expected if not key.startswith("language_model.")}


def test_an_old_layout_adapter_trains_on_as_the_parts_per_stream(tmp_path):
    new_folder, old_folder = save_new_and_old(tmp_path, lora=True)
    trainable = WorldModel.from_pretrained(str(old_folder), is_trainable=True)
    assert sorted(trainable.peft_config["default"].modules_to_save) == sorted(f"{part}.m" for part in PARTS)
    names = {name for name, p in trainable.named_parameters() if p.requires_grad}
    assert any(name.startswith("base_model.model.projector.m.modules_to_save.default.") for name in names)
    merged = trainable.merge_and_unload().state_dict()
    for key, value in WorldModel.from_pretrained(str(new_folder)).state_dict().items():
        torch.testing.assert_close(merged[key], value, rtol=0, atol=1e-6, msg=key)
