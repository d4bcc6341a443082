"""Build the tiny, offline encoders committed under ``examples/models/``: ``tiny-bert`` (text),
``tiny-vit`` (images) and ``tiny-wav2vec2`` (audio).

Each is a complete Hugging Face model folder that ``AutoModel`` and ``AutoTokenizer`` /
``AutoImageProcessor`` / ``AutoFeatureExtractor`` load without any network access, with *random* weights
drawn after ``torch.manual_seed(0)``:

* ``tiny-bert``: a WordPiece tokenizer (1,000 entries, lower-cased, ``[CLS] text [SEP]``) trained on
  ``scripts/tiny_corpus.txt`` and a ``BertModel`` (hidden 32, 2 layers, 2 heads, 128 positions);
* ``tiny-vit``: a ``ViTModel`` on 32x32 RGB images in 8x8 patches (16 patches plus the CLS token, hidden 32,
  2 layers) with its ``ViTImageProcessor`` (resize to 32x32, scale, normalise);
* ``tiny-wav2vec2``: a ``Wav2Vec2Model`` on 16 kHz mono audio (two convolutions, stride 5 x 2: one frame per
  10 samples; hidden 32, 2 layers) with its ``Wav2Vec2FeatureExtractor``.

They stand in for real encoders (sentence-transformers/all-MiniLM-L6-v2, DINOv2, wav2vec2) in the tests and
examples: same interfaces, loaded in milliseconds, well under 1 MB each. Their vectors mean nothing.

Regenerating::

    python scripts/build_tiny_encoders.py                    # -> examples/models/tiny-{bert,vit,wav2vec2}
    python scripts/build_tiny_encoders.py --output_dir /tmp/x

The build is reproducible for given ``tokenizers`` / ``transformers`` / ``torch`` versions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCRIPT_DIR = Path(__file__).resolve().parent
CORPUS_PATH = SCRIPT_DIR / "tiny_corpus.txt"
DEFAULT_OUTPUT_DIR = SCRIPT_DIR.parent / "examples" / "models"
SEED = 0
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def build_text_encoder(output_dir: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    lines = [line for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=1000, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                        show_progress=False)
    backend.train_from_iterator(lines, trainer=trainer, length=len(lines))
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                           special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=128, padding_side="right")
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=0, **SMALL)
    torch.manual_seed(SEED)
    model = BertModel(config).eval()
    folder = output_dir / "tiny-bert"
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def build_vision_encoder(output_dir: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, **SMALL)
    torch.manual_seed(SEED)
    model = ViTModel(config).eval()
    processor = ViTImageProcessor(do_resize=True, size={"height": 32, "width": 32}, do_rescale=True,
                                  do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    folder = output_dir / "tiny-vit"
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def build_audio_encoder(output_dir: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True,
        mask_time_prob=0.0, feat_proj_dropout=0.0, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        layerdrop=0.0, vocab_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    )
    torch.manual_seed(SEED)
    model = Wav2Vec2Model(config).eval()
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=True)
    folder = output_dir / "tiny-wav2vec2"
    model.save_pretrained(folder, safe_serialization=True)
    extractor.save_pretrained(folder)
    return folder


def build(output_dir: str | Path = DEFAULT_OUTPUT_DIR) -> list[Path]:
    output_dir = Path(output_dir)
    return [build_text_encoder(output_dir), build_vision_encoder(output_dir), build_audio_encoder(output_dir)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=str(DEFAULT_OUTPUT_DIR), help="folder that receives the three models")
    args = parser.parse_args(argv)
    report = {}
    for folder in build(args.output_dir):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        report[str(folder)] = {"files": [p.name for p in files], "total_bytes": sum(p.stat().st_size for p in files)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
