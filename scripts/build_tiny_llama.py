"""Build the tiny, offline Llama-architecture causal LM committed under ``examples/models/tiny-llama``.

What it builds
--------------
A complete Hugging Face model folder that ``AutoTokenizer.from_pretrained`` and
``AutoModelForCausalLM.from_pretrained`` load without any network access:

* a byte-level BPE tokenizer (``tokenizers`` library, ByteLevel pre-tokenizer and
  decoder, 2048 entries including special tokens) trained on
  ``scripts/tiny_corpus.txt``, with special tokens ``<s>`` (bos), ``</s>`` (eos),
  ``<pad>`` (pad), ``<|im_start|>`` and ``<|im_end|>``, ``model_max_length`` 2048
  and a ChatML chat template.  Plain text is encoded without any special token
  being added, so ``tokenizer(text)`` gives exactly the BPE ids;
* a ``LlamaForCausalLM`` (hidden 64, MLP 176, 2 layers, 4 attention heads,
  2 key/value heads, 2048 positions, untied input/output embeddings) with
  *random* float32 weights drawn after ``torch.manual_seed(0)``, saved as
  safetensors, plus a matching ``generation_config.json``.

Why
---
It is an offline stand-in for a real causal LM: the tests, the demo and the
examples need something that has the same interfaces as a pretrained model
(config, tokenizer, chat template, embeddings, hidden states, generate) but
loads in milliseconds, fits in git (well under 3 MB) and never touches the
Hugging Face Hub.  The weights are random, so its text predictions are
meaningless; the tokenizer is real, so tokenization, chat formatting and
sequence lengths behave like those of a real model.

Regenerating
------------
From anywhere::

    python scripts/build_tiny_llama.py                    # -> examples/models/tiny-llama
    python scripts/build_tiny_llama.py --output_dir /tmp/x

The build is bit-for-bit reproducible for a given ``tokenizers`` /
``transformers`` / ``torch`` version: running it twice gives byte-identical
files (``tests/model/test_tiny_llama.py`` checks this against the committed
folder).  ``config.json`` and ``generation_config.json`` record the
``transformers`` version used, so after a ``transformers`` upgrade re-run this
script and commit the result.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent
CORPUS_PATH = SCRIPT_DIR / "tiny_corpus.txt"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "examples" / "models" / "tiny-llama"

VOCAB_SIZE = 2048  # total, special tokens included
MODEL_MAX_LENGTH = 2048
SEED = 0

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]  # ids 0..4

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

MODEL_KWARGS = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=MODEL_MAX_LENGTH,
    tie_word_embeddings=False,
    attention_dropout=0.0,
)


def train_backend_tokenizer(corpus_path: Path = CORPUS_PATH):
    """Train the byte-level BPE ``tokenizers.Tokenizer`` on the corpus (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    text = corpus_path.read_text(encoding="utf-8")
    # One training "sequence" per non-empty line, in file order.
    lines = [line for line in text.splitlines() if line.strip()]

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    # trim_offsets only affects offsets; the ByteLevel post-processor adds no tokens.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer, length=len(lines))
    for i, tok in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(tok) == i, (tok, tokenizer.token_to_id(tok))
    return tokenizer


def build_tokenizer(corpus_path: Path = CORPUS_PATH):
    """Wrap the trained tokenizer as the transformers fast tokenizer (``TokenizersBackend`` in v5)."""
    from transformers import PreTrainedTokenizerFast  # alias of TokenizersBackend in transformers 5

    backend = train_backend_tokenizer(corpus_path)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IM_START, IM_END],
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )
    return tokenizer


def build_model(tokenizer):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_KWARGS,
    )
    config.dtype = torch.float32
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def _check_no_absolute_paths(output_dir: Path) -> None:
    for path in output_dir.iterdir():
        if path.suffix in {".json", ".jinja", ".txt"}:
            text = path.read_text(encoding="utf-8")
            for needle in {str(output_dir), str(REPO_ROOT)}:
                if needle in text:
                    raise RuntimeError(f"{path.name} contains the absolute path {needle!r}")


def build(output_dir: str | os.PathLike = DEFAULT_OUTPUT_DIR) -> Path:
    """Build the tiny model + tokenizer into ``output_dir`` and return it as a ``Path``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    model = build_model(tokenizer)

    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    _check_no_absolute_paths(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output_dir",
        default=str(DEFAULT_OUTPUT_DIR),
        help="destination folder (default: examples/models/tiny-llama under the repository root)",
    )
    args = parser.parse_args(argv)
    out = build(args.output_dir)
    files = sorted(p for p in out.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(json.dumps({"output_dir": str(out), "files": [p.name for p in files], "total_bytes": total}, indent=2))


if __name__ == "__main__":
    main()
