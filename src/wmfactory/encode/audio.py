"""Audio encoders: a `transformers` audio model (wav2vec2, HuBERT, WavLM) with its `AutoFeatureExtractor`. Files are
read with soundfile, channels averaged to mono; a sampling rate other than the model's is an error (resample the files
first: wmfactory does not resample behind your back). Pooling `mean` (over the frames) or `frame` (one vector per
frame: n = frames, e.g. 50 per second for wav2vec2)."""

from typing import Any

import numpy as np

from ..extras.compat import frame_lengths, has_frame_lengths
from ..extras.errors import ConfigError, DataError
from ..hparams.encode_args import EncodeArguments
from .encoders import Encoder, Loaded, resolved_revision, from_pretrained, hidden_size, inference, load_model, register_encoder, require
from .items import Item


def read_audio(item: Item, sampling_rate: int) -> np.ndarray:
    """The waveform `[samples]` float32, mono, at `sampling_rate`."""
    soundfile = require("soundfile", "reading audio")
    try:
        samples, rate = soundfile.read(item.path, dtype="float32", always_2d=True)  # [samples, channels]
    except (RuntimeError, OSError, ValueError, TypeError) as err:  # soundfile.LibsndfileError is a RuntimeError
        reason = str(err).split("\n")[0] or type(err).__name__
        raise DataError(f"{item.where()}: not a readable audio file ({reason})") from None
    if samples.shape[0] == 0:
        raise DataError(f"{item.where()}: the audio holds no samples")
    if rate != sampling_rate:
        raise DataError(f"{item.where()}: sampled at {rate} Hz, the encoder expects {sampling_rate} Hz (resample "
                        f"the file, e.g. `ffmpeg -i in.wav -ar {sampling_rate} out.wav`)")
    return samples.mean(axis=1)


@register_encoder("audio")
class AudioEncoder(Encoder):
    type = "audio"

    def __init__(self, args: EncodeArguments, loaded: Loaded):
        from transformers import AutoFeatureExtractor

        super().__init__(args, loaded)
        require("soundfile", "reading audio")
        self.extractor = from_pretrained(AutoFeatureExtractor, "feature extractor", args)
        self.model = load_model(args, loaded)
        self.revision = resolved_revision(args, self.model)
        if not has_frame_lengths(self.model):
            raise ConfigError(f"'{args.encoder}' is not a wav2vec2-style audio model (no frame lengths to pool "
                              "over); use a wav2vec2, HuBERT or WavLM model.")
        self.sampling_rate = int(self.extractor.sampling_rate)
        self.dimension = hidden_size(self.model.config)

    def read(self, item: Item) -> np.ndarray:
        return read_audio(item, self.sampling_rate)

    def encode_raw(self, raws: list[Any]) -> list[np.ndarray]:
        inputs = self.extractor(raws, sampling_rate=self.sampling_rate, padding=True, return_attention_mask=True,
                                return_tensors="pt")
        lengths = frame_lengths(self.model, inputs["attention_mask"].sum(-1))  # frames per item
        values = inputs["input_values"].to(self.device, self.dtype)
        with inference():
            hidden = self.model(input_values=values, attention_mask=inputs["attention_mask"].to(self.device)
                                ).last_hidden_state.float()  # [b, frames, h]
        frames = [hidden[i, : int(n)].cpu().numpy() for i, n in enumerate(lengths)]
        if self.pooling == "mean":
            return [f.mean(axis=0, keepdims=True) for f in frames]
        return frames
