"""Tests for the committed offline tiny Llama (``examples/models/tiny-llama``).

The folder is produced by ``scripts/build_tiny_llama.py``; these tests check
that the script reproduces it bit-for-bit, that it stays small, and that it
loads and behaves like a causal LM through the ``Auto*`` classes offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT_PATH = REPO_ROOT / "scripts" / "build_tiny_llama.py"
MODEL_DIR = REPO_ROOT / "examples" / "models" / "tiny-llama"
MAX_BYTES = 3 * 1024 * 1024

CHATML_CONVERSATION = [
    {"role": "user", "content": "How is the patient in bed six this morning?"},
    {"role": "assistant", "content": "Stable: oxygen 96%, no fever overnight."},
]
CHATML_RENDERED = (
    "<|im_start|>user\nHow is the patient in bed six this morning?<|im_end|>\n"
    "<|im_start|>assistant\nStable: oxygen 96%, no fever overnight.<|im_end|>\n"
)


def _load_build_script():
    spec = importlib.util.spec_from_file_location("_wmf_build_tiny_llama", SCRIPT_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture()
def tokenizer(offline):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


def test_committed_folder_exists():
    assert MODEL_DIR.is_dir(), f"missing {MODEL_DIR}; run python scripts/build_tiny_llama.py"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(_files(MODEL_DIR))


def test_build_reproduces_committed_folder_bit_for_bit(tmp_path, offline):
    build = _load_build_script().build
    out = build(tmp_path / "tiny-llama")
    assert Path(out) == tmp_path / "tiny-llama"

    committed, rebuilt = _files(MODEL_DIR), _files(Path(out))
    assert set(rebuilt) == set(committed)
    # the config files record the transformers version that wrote them; all else must be byte-identical
    versioned = {"config.json", "generation_config.json"}
    mismatched = [name for name in committed
                  if name not in versioned and _sha256(committed[name]) != _sha256(rebuilt[name])]
    assert not mismatched, f"regenerated files differ from the committed ones: {mismatched}"
    for name in versioned:
        committed_config, rebuilt_config = (json.loads(files[name].read_text()) for files in (committed, rebuilt))
        if committed_config.pop("transformers_version") == rebuilt_config.pop("transformers_version"):
            assert _sha256(committed[name]) == _sha256(rebuilt[name]), name
        assert committed_config == rebuilt_config, name


def test_folder_is_small():
    files = _files(MODEL_DIR)
    total = sum(p.stat().st_size for p in files.values())
    assert total <= MAX_BYTES, f"tiny-llama is {total} bytes (> {MAX_BYTES})"
    assert not any("__pycache__" in name for name in files)


def test_loads_offline_and_forward_pass(tokenizer, offline):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    model.eval()
    config = model.config
    assert config.model_type == "llama"
    assert config.max_position_embeddings >= 2048
    assert config.vocab_size == len(tokenizer)
    assert config.bos_token_id == tokenizer.bos_token_id
    assert config.eos_token_id == tokenizer.eos_token_id
    assert config.pad_token_id == tokenizer.pad_token_id
    assert model.dtype == torch.float32
    assert tokenizer.model_max_length == 2048

    batch = tokenizer("The robot measured the temperature every ten minutes.", return_tensors="pt")
    n = batch["input_ids"].shape[1]
    assert n > 1
    with torch.no_grad():
        logits = model(**batch).logits
    assert tuple(logits.shape) == (1, n, config.vocab_size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "text",
    [
        "The weather is mild today.",
        "Clinical note: 72 year old woman, SpO2 94% on 2 L/min; plan: wean oxygen.\n"
        "Pendulum period T = 2*pi*sqrt(L/g)  (small angles), sensors at 10 kHz.\t(ok)",
        "  leading spaces, café, naïve — unicode and emoji 🙂 round-trip  ",
    ],
)
def test_tokenizer_round_trips_text(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    # No bos/eos is added by default, and the ids are exactly the plain BPE ids.
    assert tokenizer(text)["input_ids"] == ids
    assert ids == tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids


def test_plain_ids_match_bpe(tokenizer):
    ids = tokenizer("a b", add_special_tokens=False)["input_ids"]
    assert ids == tokenizer.backend_tokenizer.encode("a b").ids
    assert not set(ids) & set(tokenizer.all_special_ids)


def test_special_tokens(tokenizer):
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    for tok in ("<|im_start|>", "<|im_end|>"):
        ids = tokenizer(tok, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1
        assert ids[0] == tokenizer.convert_tokens_to_ids(tok)
        assert tokenizer.decode(ids) == tok
    assert len(set(tokenizer.all_special_ids)) == 5


def test_chat_template_renders_chatml(tokenizer):
    rendered = tokenizer.apply_chat_template(CHATML_CONVERSATION, tokenize=False)
    assert rendered == CHATML_RENDERED
    prompt = tokenizer.apply_chat_template(CHATML_CONVERSATION[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == CHATML_RENDERED.split("<|im_start|>assistant")[0] + "<|im_start|>assistant\n"
    # The template adds no bos token, and the rendered string tokenizes with one id per ChatML marker.
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert tokenizer.bos_token_id not in ids
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == 2
    assert tokenizer.decode(ids) == rendered
